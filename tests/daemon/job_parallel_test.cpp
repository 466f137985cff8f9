// Job-parallel in the daemon (issue 7, Note [Daemon slots] in daemon/daemon.h): one worker
// per memory.devices[] card, jobs placed by the planner's predicted peak. The CPU case
// (label daemon) runs the tiny Wan model on two CPU device tiers of different sizes; the
// GPU case (built as wand_daemon_job_parallel_gpu_tests with WAND_JOB_PARALLEL_GPU, labels
// daemon + gpu) one device tier per visible CUDA device, and skips without a GPU.
//
//   ctest --test-dir build -R wand_daemon_job_parallel --output-on-failure
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#ifdef WAND_JOB_PARALLEL_GPU
#include <torch/cuda.h>

#include "scheduler/exec/device_runtime.h"
#endif
#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

nlohmann::json wan_job(std::uint64_t seed, int width = 64, int height = 64, int frames = 5) {
  return {{"model", "tiny"}, {"task", "t2v"}, {"prompt", "a cat on a surfboard"}, {"width", width},
          {"height", height}, {"frames", frames}, {"steps", 3}, {"seed", seed}};
}

std::filesystem::path make_tiny_model(const DaemonFixture& d) {
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(), "--seed", "1"});
  EXPECT_EQ(mk.exit_code, 0) << mk.err;
  return model;
}

// A memory config with one device tier per entry of `tier_bytes` (index = position),
// job-parallel only (executor.parallel "off").
std::filesystem::path write_cards_config(const DaemonFixture& d, const std::string& backend,
                                         const std::vector<std::uint64_t>& tier_bytes,
                                         const std::string& device_budget, const std::string& context_bytes) {
  nlohmann::json devices = nlohmann::json::array();
  for (std::size_t i = 0; i < tier_bytes.size(); ++i) {
    devices.push_back({{"index", static_cast<int>(i)}, {"bytes", tier_bytes[i]}, {"backend", backend}});
  }
  const nlohmann::json cfg = {
      {"memory",
       {{"host", {{"bytes", "256MiB"}, {"pinned", false}}}, {"devices", devices}, {"io", {{"engine", "psync"}}}}},
      {"executor",
       {{"pack_dir", (d.dir() / "pack").string()},
        {"device_budget", device_budget},
        {"context_bytes", context_bytes},
        // One card per job: with "auto" (the default) a job that finds no other job waiting and
        // both cards idle may run on both (group_job_test.cpp tests that), and its placement
        // would name a group instead of a card.
        {"parallel", "off"}}}};
  const auto p = d.dir() / "cards.json";
  std::ofstream(p) << cfg.dump(2);
  return p;
}

// job id -> the slot the runner placed it on ("job placed id=... slot=..." in the log).
std::map<std::string, std::string> placements_in_log(const std::string& log) {
  std::map<std::string, std::string> m;
  const std::regex re("job placed id=(\\S+) slot=(\\S+)");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it) {
    m[(*it)[1].str()] = (*it)[2].str();
  }
  return m;
}

// True when two of the jobs ran at the same time ([started_at, finished_at] intersect).
bool some_overlap(const std::vector<nlohmann::json>& jobs) {
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    for (std::size_t j = i + 1; j < jobs.size(); ++j) {
      const double si = jobs[i]["started_at"], fi = jobs[i]["finished_at"];
      const double sj = jobs[j]["started_at"], fj = jobs[j]["finished_at"];
      if (si < fj && sj < fi) return true;
    }
  }
  return false;
}

std::vector<std::string> submit_all(DaemonFixture& d, const std::vector<nlohmann::json>& jobs) {
  RawClient c(d.socket());
  c.hello();
  std::vector<std::string> ids;
  for (const auto& j : jobs) {
    const nlohmann::json r = c.call({{"type", "submit"}, {"job", j}});
    EXPECT_TRUE(r.contains("id")) << r.dump();
    ids.push_back(r.value("id", std::string()));
  }
  return ids;
}

#ifndef WAND_JOB_PARALLEL_GPU

// Two CPU cards (1 MiB and 2 MiB device tiers: both hold the tiny model's four blocks;
// whole-card budgets of 64 MiB each from executor.device_budget): four queued jobs all
// complete, on both cards, two of them at the same time, each video byte-equal to the
// resident single-card run of its seed; a job the planner predicts too big for every card
// is refused at submit naming both cards' budgets, and the others complete.
TEST(JobParallel, FourJobsOnTwoCpuCardsEqualTheResidentRun) {
  DaemonFixture d(1);
  const auto model = make_tiny_model(d);
  // Note [Stable seeds]: seeds 13 and 14 once gave a different mp4 from run to run (4 runs of
  // seed 13: 4 different files; 2026-11-25, tiny-t2v 64x64x5, 3 steps). The latents and frames
  // were identical; libx264's AVX-512 kernels were not (Note [x264 AVX-512] in model/video.cpp,
  // tests/model/determinism_test.cpp). With that fixed every seed gives the same bytes (seeds
  // 11..22, 4 runs each in one daemon and once more after a restart), so any seeds do; the
  // test includes the two that used to vary.
  const std::vector<std::uint64_t> seeds = {11, 12, 13, 14};
  std::vector<nlohmann::json> jobs;
  for (auto s : seeds) jobs.push_back(wan_job(s));

  // Resident, one worker (no memory section).
  d.start({"--model", "tiny=" + model.string()});
  std::vector<std::string> resident;
  for (const auto& id : submit_all(d, jobs)) {
    EXPECT_EQ(watch_until(d, id, [](const nlohmann::json&) { return false; })["state"], "done") << d.log();
    resident.push_back(fetch(d, id));
    ASSERT_GT(resident.back().size(), 100u);
  }
  d.stop();

  // Two CPU cards. A job the planner predicts too big for every card is refused at submit
  // (Note [Job admission]), naming each card's budget; the others run.
  d.start({"--config", write_cards_config(d, "cpu", {1u << 20, 2u << 20}, "64MiB", "1MiB").string(), "--model",
           "tiny=" + model.string()});
  {
    RawClient c(d.socket());
    c.hello();
    const nlohmann::json r = c.call({{"type", "submit"}, {"job", wan_job(99, 1280, 720, 81)}});
    EXPECT_EQ(r.value("type", std::string()), "error") << r.dump();
    const std::string err = r.value("message", std::string());
    EXPECT_NE(err.find("too big for every card"), std::string::npos) << r.dump();
    EXPECT_NE(err.find("cpu:0 64.0 MiB"), std::string::npos) << err;
    EXPECT_NE(err.find("cpu:1 64.0 MiB"), std::string::npos) << err;
  }
  const std::vector<std::string> all = submit_all(d, jobs);
  ASSERT_EQ(all.size(), 4u);
  std::vector<std::string> ids = {""};  // ids[i] is the job of seeds[i - 1]
  ids.insert(ids.end(), all.begin(), all.end());

  std::vector<nlohmann::json> finished;
  for (std::size_t i = 1; i < ids.size(); ++i) {
    const nlohmann::json j = watch_until(d, ids[i], [](const nlohmann::json&) { return false; });
    EXPECT_EQ(j["state"], "done") << j.dump() << d.log();
    finished.push_back(j);
    EXPECT_TRUE(fetch(d, ids[i]) == resident[i - 1]) << "job " << ids[i] << " (seed " << seeds[i - 1]
                                                      << ") differs from the resident run";
  }
  const auto placed = placements_in_log(d.log());
  std::set<std::string> cards;
  for (std::size_t i = 1; i < ids.size(); ++i) {
    ASSERT_TRUE(placed.count(ids[i])) << "no placement logged for " << ids[i] << "\n" << d.log();
    cards.insert(placed.at(ids[i]));
  }
  EXPECT_EQ(cards, (std::set<std::string>{"cpu:0", "cpu:1"})) << d.log();
  EXPECT_TRUE(some_overlap(finished)) << "no two jobs ran at the same time";
  d.stop();
}

#else  // WAND_JOB_PARALLEL_GPU

// One device tier per visible CUDA device (16 MiB, 32 MiB, ...: whole-card budgets 2 GiB,
// 2 GiB + 16 MiB, ...). Four tiny jobs all complete; with 2+ GPUs several cards are used and
// two jobs overlap; with one GPU (one slot) they run one after the other in submission
// order. `tiers` reports each card's allocator reserved bytes within its budget.
TEST(JobParallelGpu, TinyJobsOnEveryCardWithinTheirBudgets) {
#ifndef WAND_EXEC_TORCH_CUDA
  GTEST_SKIP() << "LibTorch without CUDA";
#else
  if (!wand::sched::exec::torch_cuda_available()) GTEST_SKIP() << "no GPU";
  const int n = static_cast<int>(torch::cuda::device_count());
  DaemonFixture d(1);
  const auto model = make_tiny_model(d);
  std::vector<std::uint64_t> tiers;
  std::vector<std::uint64_t> budgets;
  for (int i = 0; i < n; ++i) {
    tiers.push_back(static_cast<std::uint64_t>(16 + 16 * i) << 20);
    budgets.push_back((2ull << 30) + (static_cast<std::uint64_t>(16 * i) << 20));
  }
  d.start({"--config", write_cards_config(d, "cuda", tiers, "2GiB", "600MiB").string(), "--model",
           "tiny=" + model.string()});
  std::vector<nlohmann::json> jobs;
  for (std::uint64_t s = 21; s < 25; ++s) jobs.push_back(wan_job(s));
  const std::vector<std::string> ids = submit_all(d, jobs);
  std::vector<nlohmann::json> finished;
  for (const auto& id : ids) {
    const nlohmann::json j = watch_until(d, id, [](const nlohmann::json&) { return false; });
    EXPECT_EQ(j["state"], "done") << j.dump() << d.log();
    finished.push_back(j);
  }
  const auto placed = placements_in_log(d.log());
  std::set<std::string> cards;
  for (const auto& id : ids) {
    ASSERT_TRUE(placed.count(id)) << "no placement logged for " << id << "\n" << d.log();
    cards.insert(placed.at(id));
  }
  if (n >= 2) {
    EXPECT_GE(cards.size(), 2u) << d.log();
    EXPECT_TRUE(some_overlap(finished)) << "no two jobs ran at the same time";
  } else {
    EXPECT_EQ(cards, (std::set<std::string>{"cuda:0"}));
    for (std::size_t i = 1; i < finished.size(); ++i) {  // one slot: in order, one at a time
      EXPECT_LE(finished[i - 1]["finished_at"].get<double>(), finished[i]["started_at"].get<double>());
    }
  }
  CmdResult t = d.wanctl({"tiers", "--json"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  int seen = 0;
  // A named copy: iterating t.json()["tiers"] would read a destroyed temporary (the first
  // GPU run of this test counted 0 device tiers that way).
  const nlohmann::json report = t.json();
  for (const auto& tier : report["tiers"]) {
    if (tier.value("kind", std::string()) != "device" || !tier.contains("allocator_reserved_bytes")) continue;
    const int dev = tier.value("device", -1);
    ASSERT_GE(dev, 0);
    ASSERT_LT(dev, n);
    EXPECT_LE(tier["allocator_reserved_bytes"].get<std::uint64_t>(), budgets[static_cast<std::size_t>(dev)])
        << tier.dump();
    ++seen;
  }
  EXPECT_EQ(seen, n) << t.out;
  d.stop();
#endif
}

#endif  // WAND_JOB_PARALLEL_GPU

}  // namespace
}  // namespace wand::test
