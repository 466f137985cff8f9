// Cost model (hand-computed FLOPs), planner v1 (one card) and v2 (several cards) on the real
// t2v-A14B geometry (a sparse release-layout directory, read once per suite).
#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/exec/exec_budget.h"
#include "scheduler/plan/multi_planner.h"
#include "scheduler/plan/planner.h"
#include "tests/scheduler/plan/model_dir_writer.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::plan {
namespace {

constexpr std::uint64_t kGiB = 1ull << 30;

class PlanA14B : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new wand::test::TempDir();
    test::write_model_dir(tmp_->path() / "a14b", test::Geometry::t2v_a14b(), "BF16", test::kT5Bytes,
                          test::kVae21Bytes);
    shape_ = new ModelShape(model_shape_from_dir(tmp_->path() / "a14b"));
  }
  static void TearDownTestSuite() {
    delete shape_;
    delete tmp_;
  }
  static JobSpec job(int w, int h, int frames = 81, int steps = 40) {
    JobSpec s;
    s.task = "t2v";
    s.model = "a14b";
    s.width = w;
    s.height = h;
    s.frames = frames;
    s.steps = steps;
    return s;
  }
  static const ModelShape& m() { return *shape_; }
  static inline wand::test::TempDir* tmp_ = nullptr;
  static inline ModelShape* shape_ = nullptr;
};

TEST_F(PlanA14B, TokensAndFlopsMatchHandComputation) {
  const Calibration cal = Calibration::defaults();
  // 832x480x81: latent 21 x 60 x 104, tokens 21 x 30 x 52.
  JobGeometry g = job_geometry(m(), job(832, 480));
  EXPECT_EQ(g.lat_f, 21);
  EXPECT_EQ(g.tokens, 32760);
  EXPECT_EQ(g.steps_high, 26);  // t2v, 40 UniPC steps, shift 12, boundary 0.875
  EXPECT_EQ(g.steps_low, 14);
  BlockWork w = block_work(m(), g.tokens, g.tokens, 1);
  // 12 S D^2 + 4 L D^2 + 4 S D F with S 32,760, D 5,120, F 13,824, L 512:
  // 10,305,404,928,000 + 53,687,091,200 + 9,274,864,435,200
  EXPECT_DOUBLE_EQ(w.gemm_flop, 19633956454400.0);
  // 4 S^2 D + 4 S L D = 21,979,496,448,000 + 343,513,497,600
  EXPECT_DOUBLE_EQ(w.attention_flop, 22323009945600.0);
  // The default calibration reproduces the measured fused C++ block (68.0 ms,
  // bench/results/gpu-session-h100x2-2026-11-25.md).
  const double t480 = block_time(m(), w, cal.device, cal).total();
  EXPECT_NEAR(t480, 0.0680, 0.0680 * 0.03);

  g = job_geometry(m(), job(1280, 720));
  EXPECT_EQ(g.tokens, 75600);  // 21 x 45 x 80
  w = block_work(m(), g.tokens, g.tokens, 1);
  EXPECT_DOUBLE_EQ(w.gemm_flop, 45238924083200.0);
  EXPECT_DOUBLE_EQ(w.attention_flop, 117843296256000.0);
  const double t720 = block_time(m(), w, cal.device, cal).total();
  EXPECT_NEAR(t720, 0.2766, 0.2766 * 0.03);

  // Ulysses over 4 ranks: a quarter of the GEMM / attention work (plus the text k, v in full).
  BlockWork u = block_work(m(), 75600 / 4, 75600, 4);
  EXPECT_DOUBLE_EQ(u.attention_flop, 117843296256000.0 / 4);
  EXPECT_DOUBLE_EQ(u.gemm_flop - 4.0 * 512 * 5120 * 5120, (45238924083200.0 - 4.0 * 512 * 5120 * 5120) / 4);

  EXPECT_THROW(job_geometry(m(), job(830, 480)), Error);
  EXPECT_THROW(job_geometry(m(), job(832, 480, 80)), Error);
}

TEST_F(PlanA14B, A24GiBCardStreamsAnd80GiBCardKeepsEverythingResident) {
  const Calibration cal = Calibration::defaults();
  const SingleCardPlan small = plan_single_card(m(), job(832, 480), {0, 22 * kGiB}, 64 * kGiB, cal);
  EXPECT_GE(small.card.prefetch_depth, 1);
  EXPECT_LT(small.card.resident_blocks, 80);
  EXPECT_GT(small.card.resident_blocks, 0);
  EXPECT_LE(small.card.peak.total(), 22 * kGiB);
  EXPECT_EQ(small.card.peak.weight_slots, static_cast<std::uint64_t>(small.card.prefetch_depth + 1) * m().max_block_run_bytes());
  EXPECT_EQ(small.card.bound, "compute");  // 161.8 ms of compute per block vs 13 ms of PCIe
  // Compute-bound: the step is 40 blocks x both branches.
  EXPECT_NEAR(small.card.step_s, 40 * small.card.block_compute_s, 1e-9);
  EXPECT_EQ(small.card.cold_steps_per_job, 2);

  const SingleCardPlan big = plan_single_card(m(), job(1280, 720), {0, 76 * kGiB}, 128 * kGiB, cal);
  EXPECT_EQ(big.card.prefetch_depth, 0);
  EXPECT_EQ(big.card.resident_blocks, 80);
  EXPECT_EQ(big.card.peak.resident_blocks, 80 * m().max_block_run_bytes());
  EXPECT_LE(big.card.peak.total(), 76 * kGiB);
  EXPECT_EQ(big.card.cold_steps_per_job, 0);
  EXPECT_EQ(big.host.disk_bytes_per_job, 0u);
  EXPECT_TRUE(big.host.t5_in_host);
  // Job = umT5 + 40 steps + VAE.
  EXPECT_NEAR(big.times.job_s, big.times.t5_s + 40 * big.card.step_s + big.times.vae_s, 1e-6);
  EXPECT_EQ(predicted_peak_bytes(m(), job(1280, 720), {0, 76 * kGiB}, cal), big.card.peak.total());
  EXPECT_TRUE(fits(m(), job(1280, 720), {0, 76 * kGiB}, cal));
}

TEST_F(PlanA14B, ChunkingIsChosenWhenTheUnchunkedActivationsDoNotFit) {
  const Calibration cal = Calibration::defaults();
  // 720p unchunked activations ~11.7 GiB x 1.125: a 14 GiB card needs the 16,384-token chunk.
  const SingleCardPlan p = plan_single_card(m(), job(1280, 720), {0, 14 * kGiB}, 128 * kGiB, cal);
  EXPECT_EQ(p.card.chunk_tokens, 16384);
  EXPECT_TRUE(p.card.chunk_speed_measured);
  EXPECT_LE(p.card.peak.total(), 14 * kGiB);
}

TEST_F(PlanA14B, ABudgetBelowOneBlockIsRefusedWithTheNumbers) {
  const Calibration cal = Calibration::defaults();
  try {
    plan_single_card(m(), job(832, 480), {3, 600ull << 20}, 64 * kGiB, cal);
    FAIL() << "600 MiB accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("device 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find(format_bytes(600ull << 20)), std::string::npos) << msg;
    EXPECT_NE(msg.find(format_bytes(m().max_block_run_bytes())), std::string::npos) << msg;
  }
  EXPECT_FALSE(fits(m(), job(832, 480), {3, 600ull << 20}, cal));
  EXPECT_THROW(predicted_peak_bytes(m(), job(832, 480), {3, 600ull << 20}, cal), Error);
  // A host budget below the disk staging window.
  try {
    plan_single_card(m(), job(832, 480), {0, 22 * kGiB}, 1 * kGiB, cal);
    FAIL() << "1 GiB of host accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("host budget"), std::string::npos) << e.what();
  }
}

TEST_F(PlanA14B, A32GiBHostReadsTheExpertsFromDiskEveryJob) {
  const Calibration cal = Calibration::defaults();
  const SingleCardPlan p = plan_single_card(m(), job(832, 480), {0, 22 * kGiB}, 32 * kGiB, cal);
  const std::uint64_t dit = 2 * m().expert_run_bytes(0);
  const std::uint64_t cache = 32 * kGiB - 4 * m().max_block_run_bytes();
  EXPECT_EQ(p.host.dit_in_host, cache);
  EXPECT_FALSE(p.host.t5_in_host);
  EXPECT_EQ(p.host.disk_bytes_per_job, 2 * (dit - cache));
  EXPECT_DOUBLE_EQ(p.times.disk_floor_s, static_cast<double>(2 * (dit - cache)) / 1.86e9);
  EXPECT_NEAR(p.times.t5_s, static_cast<double>(test::kT5Bytes) / 1.86e9, 0.1);  // umT5 from disk
  EXPECT_LE(p.host.total(), 32 * kGiB);
  // An 80 GB card keeps every block: nothing is re-read per job (only umT5 comes from disk).
  const SingleCardPlan big = plan_single_card(m(), job(832, 480), {0, 76 * kGiB}, 32 * kGiB, cal);
  EXPECT_EQ(big.host.disk_bytes_per_job, 0u);
  EXPECT_DOUBLE_EQ(big.times.disk_floor_s, 0.0);
  EXPECT_FALSE(big.host.t5_in_host);
}

TEST_F(PlanA14B, AFixedTierIsHeldWholeAndTheActivationsGetTheRest) {
  // Note [Fixed tier]: the bench's (b) card (23 GiB budget, 10 GiB tier sized for 720p).
  const Calibration cal = Calibration::defaults();
  const std::uint64_t tier = 10 * kGiB, blk = m().max_block_run_bytes();
  const SingleCardPlan p480 = plan_single_card(m(), job(832, 480), {0, 23 * kGiB, tier}, 64 * kGiB, cal);
  const SingleCardPlan p720 = plan_single_card(m(), job(1280, 720), {0, 23 * kGiB, tier}, 64 * kGiB, cal);
  for (const SingleCardPlan* p : {&p480, &p720}) {
    ASSERT_TRUE(p->card.feasible) << p->card.reason;
    EXPECT_EQ(p->card.peak.weight_slots + p->card.peak.resident_blocks, tier);  // the whole tier
    EXPECT_EQ(p->card.prefetch_depth, 2);
    EXPECT_EQ(p->card.resident_blocks, static_cast<int>((tier - 3 * blk) / blk));
    EXPECT_LE(p->card.peak.total(), 23 * kGiB);
  }
  // Same tier, so the two sizes differ only by their activations (480p is far below the budget:
  // the free planner would have filled the card with resident blocks instead).
  EXPECT_EQ(p720.card.peak.total() - p480.card.peak.total(),
            p720.card.peak.activations - p480.card.peak.activations);
  const SingleCardPlan free480 = plan_single_card(m(), job(832, 480), {0, 23 * kGiB}, 64 * kGiB, cal);
  EXPECT_GT(free480.card.peak.total(), p480.card.peak.total() + 4 * kGiB);
  // A tier that leaves no room for the activations: refused (no chunk fits either), naming the tier.
  try {
    plan_single_card(m(), job(832, 480), {0, 23 * kGiB, 22 * kGiB}, 64 * kGiB, cal);
    FAIL() << "a 22 GiB tier on a 23 GiB budget accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("device tier " + format_bytes(22 * kGiB)), std::string::npos) << e.what();
  }
}

TEST_F(PlanA14B, ColdJobAndUmT5DiskBytes) {
  const Calibration cal = Calibration::defaults();
  // 32 GiB host: the DiT does not fit; a cold job reads every block once, umT5 once (both prompts
  // in one layer pass), and umT5 again every job.
  const SingleCardPlan p = plan_single_card(m(), job(832, 480), {0, 22 * kGiB}, 32 * kGiB, cal);
  EXPECT_EQ(p.host.t5_disk_bytes_per_job, test::kT5Bytes);
  // Note [Switch waits]: beside the active expert the cache prefetches cache - E of the next one;
  // the switch step waits for the rest, minus one step of compute; a cold job also waits for its
  // first expert (minus one streaming step).
  const std::uint64_t E = m().expert_run_bytes(0), cache = 32 * kGiB - 4 * m().max_block_run_bytes();
  EXPECT_EQ(p.host.switch_wait_bytes, E - (cache - E));
  EXPECT_EQ(p.host.first_wait_bytes, E);
  const double disk = cal.disk_gbps.value * 1e9;
  EXPECT_NEAR(p.times.switch_wait_s, static_cast<double>(E - (cache - E)) / disk - p.card.step_s, 1e-6);
  EXPECT_GT(p.times.switch_wait_s, 0.0);
  EXPECT_NEAR(p.times.first_job_s,
              p.times.t5_s + p.times.steps_s + (static_cast<double>(E) / disk - p.card.cold_step_s) +
                  p.times.switch_wait_s + p.times.vae_s,
              1e-6);
  EXPECT_NEAR(p.times.job_s, p.times.t5_s + std::max(p.times.steps_s + 2 * p.times.switch_wait_s, p.times.disk_floor_s) +
                                 p.times.vae_s,
              1e-6);
  EXPECT_EQ(p.host.disk_bytes_first_job, 2 * m().expert_run_bytes(0) + test::kT5Bytes);
  // A big host keeps both: the first job reads the stored shards (shared here) and umT5 once, later jobs nothing.
  const SingleCardPlan big = plan_single_card(m(), job(832, 480), {0, 22 * kGiB}, 160 * kGiB, cal);
  EXPECT_TRUE(big.host.t5_in_host);
  EXPECT_EQ(big.host.t5_disk_bytes_per_job, 0u);
  EXPECT_EQ(big.host.disk_bytes_first_job, big.host.first_load_bytes);
  EXPECT_EQ(big.host.switch_wait_bytes, 0u);
  EXPECT_DOUBLE_EQ(big.times.switch_wait_s, 0.0);
}

TEST_F(PlanA14B, V2PicksJobParallelForAQueueAndSplitsOneJob) {
  const Calibration cal = Calibration::defaults();
  MachineSpec four{{{0, 22 * kGiB}, {1, 22 * kGiB}, {2, 22 * kGiB}, {3, 22 * kGiB}}, 160 * kGiB};
  const std::vector<JobSpec> queue(4, job(832, 480));
  const MultiPlan q = plan_multi(m(), queue, four, cal);
  EXPECT_EQ(q.mode, "throughput");
  EXPECT_EQ(q.choice.strategy, "job-parallel");
  ASSERT_EQ(q.jobs.size(), 4u);
  std::vector<int> used;
  for (const auto& a : q.jobs) {
    ASSERT_TRUE(a.prediction.feasible);
    EXPECT_EQ(a.prediction.strategy, "job-parallel");
    ASSERT_EQ(a.prediction.devices.size(), 1u);
    used.push_back(a.prediction.devices[0]);
    EXPECT_DOUBLE_EQ(a.start_s, 0.0);
  }
  std::sort(used.begin(), used.end());
  EXPECT_EQ(used, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_NEAR(q.jobs_per_hour, 4 * 3600.0 / q.makespan_s, 1e-9);

  MachineSpec two{{{0, 22 * kGiB}, {1, 22 * kGiB}}, 160 * kGiB};
  const MultiPlan one = plan_multi(m(), {job(832, 480)}, two, cal);
  EXPECT_EQ(one.mode, "latency");
  EXPECT_TRUE(one.choice.strategy == "cfg-parallel" || one.choice.strategy.rfind("ulysses-", 0) == 0)
      << one.choice.strategy;
  EXPECT_EQ(one.choice.devices.size(), 2u);
  double single = 0;
  for (const auto& s : one.strategies) {
    if (s.strategy == "single") single = s.step_s;
  }
  ASSERT_GT(single, 0);
  EXPECT_LT(one.choice.step_s, 0.6 * single);  // two cards: about half the step
  // Every strategy is listed for comparison.
  std::vector<std::string> names;
  for (const auto& s : one.strategies) names.push_back(s.strategy);
  EXPECT_NE(std::find(names.begin(), names.end(), "cfg-parallel"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "ulysses-2"), names.end());
  const auto j = one.to_json(m(), cal, two);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["choice"]["strategy"], one.choice.strategy);
}

TEST_F(PlanA14B, UlyssesRejectsHeadCountsThatDoNotDivide) {
  const Calibration cal = Calibration::defaults();
  MachineSpec three{{{0, 22 * kGiB}, {1, 22 * kGiB}, {2, 22 * kGiB}}, 160 * kGiB};
  const JobGeometry g = job_geometry(m(), job(832, 480));
  const StrategyPrediction u3 = evaluate_strategy(m(), g, three, cal, "ulysses", 3, {0, 1, 2});
  EXPECT_FALSE(u3.feasible);
  EXPECT_NE(u3.reason.find("num_heads 40 is not divisible by 3"), std::string::npos) << u3.reason;
  const StrategyPrediction u2 = evaluate_strategy(m(), g, three, cal, "ulysses", 2, {0, 1, 2});
  EXPECT_TRUE(u2.feasible) << u2.reason;
  EXPECT_GT(u2.cards[0].comm_s_per_block, 0);
  // 32,760 tokens over 2 ranks: 16,380 a rank; 8 all-to-alls a block of half that tensor.
  EXPECT_NEAR(u2.cards[0].comm_s_per_block, 8 * 16380.0 * 5120 * 2 * 0.5 / 25e9, 1e-12);
  const MultiPlan p = plan_multi(m(), {job(832, 480)}, three, cal);
  bool listed = false;
  for (const auto& s : p.strategies) {
    if (s.strategy == "ulysses-3") {
      listed = true;
      EXPECT_FALSE(s.feasible);
    }
  }
  EXPECT_TRUE(listed);
}

TEST_F(PlanA14B, ASmallCardThatCannotFitIsExcluded) {
  const Calibration cal = Calibration::defaults();
  MachineSpec mixed{{{0, 22 * kGiB}, {1, 10 * kGiB}, {2, 76 * kGiB}}, 96 * kGiB};
  const std::vector<JobSpec> queue(4, job(1280, 720));
  const MultiPlan p = plan_multi(m(), queue, mixed, cal);
  ASSERT_EQ(p.excluded.size(), 1u);
  EXPECT_EQ(p.excluded[0].first, 1);
  EXPECT_NE(p.excluded[0].second.find("device 1"), std::string::npos) << p.excluded[0].second;
  for (const auto& a : p.jobs) {
    ASSERT_TRUE(a.prediction.feasible);
    EXPECT_NE(a.prediction.devices[0], 1);
  }
  // At 480p the same card fits (and is used).
  const MultiPlan q = plan_multi(m(), std::vector<JobSpec>(6, job(832, 480)), mixed, cal);
  EXPECT_TRUE(q.excluded.empty());
  bool used1 = false;
  for (const auto& a : q.jobs) used1 = used1 || a.prediction.devices[0] == 1;
  EXPECT_TRUE(used1);
}

TEST_F(PlanA14B, EightStreamingCardsAreSlowerPerCardThanOne) {
  const Calibration cal = Calibration::defaults();
  // 17 frames at 480p: 7,800 tokens, ~25 ms of compute per block: PCIe matters.
  const JobSpec short_job = job(832, 480, 17);
  const SingleCardPlan one = plan_single_card(m(), short_job, {0, 22 * kGiB}, 256 * kGiB, cal);
  EXPECT_TRUE(one.card.streaming());
  EXPECT_DOUBLE_EQ(one.card.pcie_gbps_effective, 53.8);
  MachineSpec eight;
  eight.host_bytes = 256 * kGiB;
  for (int i = 0; i < 8; ++i) eight.devices.push_back({i, 22 * kGiB});
  const MultiPlan p = plan_multi(m(), std::vector<JobSpec>(8, short_job), eight, cal);
  ASSERT_EQ(p.jobs.size(), 8u);
  for (const auto& a : p.jobs) {
    ASSERT_TRUE(a.prediction.feasible);
    EXPECT_DOUBLE_EQ(a.prediction.cards[0].pcie_gbps_effective, 100.0 / 8);  // host_mem_gbps / 8
    EXPECT_GT(a.prediction.step_s, one.card.step_s * 1.2);
    EXPECT_EQ(a.prediction.cards[0].bound, "pcie");
  }
}

TEST(PlanTi2v, OneExpertAtTheVae22Stride) {
  wand::test::TempDir tmp;
  test::write_model_dir(tmp.path() / "ti2v", test::Geometry::ti2v_5b(), "BF16", test::kT5Bytes, test::kVae22Bytes);
  const ModelShape m = model_shape_from_dir(tmp.path() / "ti2v");
  JobSpec s;
  s.task = "ti2v";  // defaults: 1280x704, 121 frames, 50 steps
  const Calibration cal = Calibration::defaults();
  const SingleCardPlan p = plan_single_card(m, s, {0, 22 * kGiB}, 32 * kGiB, cal);
  EXPECT_EQ(p.geom.width, 1280);
  EXPECT_EQ(p.geom.height, 704);
  EXPECT_EQ(p.geom.frames, 121);
  EXPECT_EQ(p.geom.tokens, 31 * 22 * 40);  // latent 31 x 44 x 80, patches 2 x 2
  EXPECT_EQ(p.geom.steps_high, 50);
  EXPECT_EQ(p.geom.steps_low, 0);
  EXPECT_EQ(p.card.cold_steps_per_job, 0);  // one expert: the resident set never changes
  EXPECT_EQ(p.host.disk_bytes_per_job, 0u);  // 10 GB of DiT + 11.4 GB umT5 fit 32 GiB
  EXPECT_TRUE(p.host.t5_in_host);
  // 30 blocks x 2 branches, the 3,072-wide block at 27,280 tokens.
  const BlockWork w = block_work(m, 27280, 27280, 1);
  const double D = 3072, F = 14336, S = 27280, L = 512;
  EXPECT_DOUBLE_EQ(w.gemm_flop, 12 * S * D * D + 4 * L * D * D + 4 * S * D * F);
  EXPECT_DOUBLE_EQ(w.attention_flop, 4 * S * S * D + 4 * S * L * D);
}

// exec_budget.cpp (LibTorch-free) is compiled into this test (tests/scheduler/plan/CMakeLists.txt).
TEST(PlanActivation, SameFormulaAsTheExecutorBudget) {
  for (std::int64_t S : {7800, 32760, 75600}) {
    for (std::int64_t chunk : {0, 16384, 1024}) {
      exec::DitGeometry g;
      g.tokens = S;
      g.dim = 5120;
      g.ffn_dim = 13824;
      g.text_len = 512;
      g.chunk_tokens = chunk;
      g.run_bytes = 2;
      EXPECT_EQ(activation_bytes(S, 5120, 13824, 512, chunk, 2, /*branches=*/2), exec::dit_activation_bytes(g))
          << S << " " << chunk;
    }
  }
}

TEST(PlanCalibration, FileOverridesAreSourcedAndPerDevice) {
  const nlohmann::json j = nlohmann::json::parse(R"({
    "gemm_tflops": 160,
    "pcie_gbps": {"value": 24.5, "source": "bench_pcie 2026-12-01 on RTX 4090"},
    "context_bytes": "1GiB",
    "devices": [{"index": 2, "gemm_tflops": 700}]
  })");
  const Calibration c = Calibration::from_json(j, "/x/calibration.json");
  EXPECT_EQ(c.device.gemm_tflops.value, 160);
  EXPECT_EQ(c.device.gemm_tflops.source, "file /x/calibration.json");
  EXPECT_EQ(c.device.pcie_gbps.source, "bench_pcie 2026-12-01 on RTX 4090");
  EXPECT_EQ(c.context_bytes.value, 1024.0 * 1024 * 1024);
  EXPECT_EQ(c.device.attention_tflops.source, "default");
  EXPECT_EQ(c.rates_for(2).gemm_tflops.value, 700);
  EXPECT_EQ(c.rates_for(2).pcie_gbps.value, 24.5);
  EXPECT_EQ(c.rates_for(0).gemm_tflops.value, 160);
  const auto out = c.to_json();
  EXPECT_EQ(out["attention_tflops"]["source"], "default");
  EXPECT_EQ(out["host_mem_gbps"]["measured"], false);
  try {
    Calibration::from_json(nlohmann::json::parse(R"({"gemm_tflop": 1})"), "f.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gemm_tflop"), std::string::npos);
  }
  EXPECT_THROW(Calibration::from_json(nlohmann::json::parse(R"({"disk_gbps": -1})"), "f.json"), Error);
}

}  // namespace
}  // namespace wand::sched::plan

namespace wand::sched::plan {
namespace {

// Note [Guidance 1] (model/sampler_schedule.h): a job with guide scale 1 on every step has one
// CFG branch: the card plan counts one branch (compute and the activation streams), and on two
// cards the CFG splits are infeasible with the reason, so the choice is another strategy.
TEST_F(PlanA14B, GuidanceOneCountsOneBranchAndChoosesNoCfgSplit) {
  const Calibration cal = Calibration::defaults();
  JobSpec guided = job(832, 480, 81, 4);
  JobSpec unguided = guided;
  unguided.guide_scale = {1.0};
  JobSpec mixed = guided;
  mixed.guide_scale = {1.0, 4.0};  // (low noise, high noise): the high-noise steps still guide
  EXPECT_EQ(job_geometry(m(), guided).branches, 2);  // the model's (3.0, 4.0)
  EXPECT_EQ(job_geometry(m(), unguided).branches, 1);
  EXPECT_EQ(job_geometry(m(), mixed).branches, 2);
  JobSpec high_one = guided;  // (4.0, 1.0): the low-noise steps still guide
  high_one.guide_scale = {4.0, 1.0};
  EXPECT_EQ(job_geometry(m(), high_one).branches, 2);
  EXPECT_EQ(job_geometry(m(), unguided).to_json()["branches"], 1);

  // One card: one branch of compute and one fp32 stream fewer.
  const DeviceSpec card{0, 22 * kGiB};
  const SingleCardPlan pg = plan_single_card(m(), guided, card, 160 * kGiB, cal);
  const SingleCardPlan pu = plan_single_card(m(), unguided, card, 160 * kGiB, cal);
  EXPECT_DOUBLE_EQ(pu.card.block_compute_s, pg.card.block_compute_s / 2);
  EXPECT_LT(pu.card.step_s, pg.card.step_s);
  if (pu.card.chunk_tokens == pg.card.chunk_tokens) {
    EXPECT_EQ(pg.card.activation_need - pu.card.activation_need, 32760ull * 5120 * 4);  // one [S, D] fp32 stream
  }

  // Two cards: no CFG split for the unguided job, with the reason; a guided one may split.
  MachineSpec two{{{0, 22 * kGiB}, {1, 22 * kGiB}}, 160 * kGiB};
  const MultiPlan p = plan_multi(m(), {unguided}, two, cal);
  EXPECT_NE(p.choice.strategy, "cfg-parallel");
  EXPECT_TRUE(p.choice.strategy == "single" || p.choice.strategy == "ulysses-2") << p.choice.strategy;
  bool listed = false;
  for (const auto& s : p.strategies) {
    if (s.strategy != "cfg-parallel") continue;
    listed = true;
    EXPECT_FALSE(s.feasible);
    EXPECT_NE(s.reason.find("guidance 1"), std::string::npos) << s.reason;
  }
  EXPECT_TRUE(listed);
  MachineSpec four{{{0, 22 * kGiB}, {1, 22 * kGiB}, {2, 22 * kGiB}, {3, 22 * kGiB}}, 160 * kGiB};
  const MultiPlan p4 = plan_multi(m(), {unguided}, four, cal);
  EXPECT_EQ(p4.choice.strategy.rfind("cfg", 0), std::string::npos) << p4.choice.strategy;
  for (const auto& s : p4.strategies) {
    if (s.strategy.rfind("cfg", 0) == 0) EXPECT_FALSE(s.feasible) << s.strategy;
  }
  const StrategyPrediction cg = evaluate_strategy(m(), job_geometry(m(), guided), two, cal, "cfg-parallel", 2, {0, 1});
  EXPECT_TRUE(cg.feasible) << cg.reason;
  const StrategyPrediction cm = evaluate_strategy(m(), job_geometry(m(), mixed), two, cal, "cfg-parallel", 2, {0, 1});
  EXPECT_TRUE(cm.feasible) << cm.reason;
  // Ulysses at guidance 1: one branch per rank, half the all-to-all traffic.
  const StrategyPrediction ug = evaluate_strategy(m(), job_geometry(m(), guided), two, cal, "ulysses", 2, {0, 1});
  const StrategyPrediction uu = evaluate_strategy(m(), job_geometry(m(), unguided), two, cal, "ulysses", 2, {0, 1});
  ASSERT_TRUE(ug.feasible && uu.feasible);
  EXPECT_DOUBLE_EQ(uu.cards[0].comm_s_per_block, ug.cards[0].comm_s_per_block / 2);
  EXPECT_LT(uu.step_s, ug.step_s);
}

// The planner's LibTorch-free copy of the schedules agrees with the few-step switch worked out
// in tests/model/dit_sampler_test.cpp (ExpertSwitch.FewStepsFollowTheBoundary).
TEST(PlanSchedule, HighNoiseStepsAtFourAndEightSteps) {
  struct Case {
    const char* sampler;
    int steps;
    double shift, boundary;
    int high;
  };
  for (const Case& c : std::vector<Case>{{"unipc", 4, 12.0, 0.875, 3}, {"unipc", 8, 12.0, 0.875, 6},
                                         {"unipc", 4, 5.0, 0.9, 2},     {"unipc", 8, 5.0, 0.9, 3},
                                         {"dpm++", 4, 12.0, 0.875, 3},  {"dpm++", 8, 12.0, 0.875, 6},
                                         {"dpm++", 4, 5.0, 0.9, 2},     {"dpm++", 8, 5.0, 0.9, 3},
                                         {"euler", 4, 12.0, 0.875, 2},  {"euler", 8, 12.0, 0.875, 5},
                                         {"euler", 4, 5.0, 0.9, 2},     {"euler", 8, 5.0, 0.9, 3}}) {
    EXPECT_EQ(high_noise_steps(c.sampler, c.steps, c.shift, c.boundary), c.high)
        << c.sampler << " " << c.steps << " steps, boundary " << c.boundary;
  }
}

}  // namespace
}  // namespace wand::sched::plan
