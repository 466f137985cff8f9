#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/fake_pipeline.h"
#include "scheduler/job_runner.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

namespace fs = std::filesystem;

// A fake model dir, a registry with it, and a state dir.
struct Fixture {
  test::TempDir model;
  test::TempDir state;
  PipelineRegistry registry;
  Fixture() {
    std::ofstream(model.path() / kFakeModelMarker) << R"({"step_ms": 0, "blocks": 3})";
    register_fake_pipeline(registry);
    registry.add_model("fake", model.path());
  }
};

JobSpec spec(std::uint64_t seed) {
  JobSpec s;
  s.model = "fake";
  s.prompt = "a lighthouse";
  s.width = 32;
  s.height = 24;
  s.frames = 9;
  s.steps = 8;
  s.seed = seed;
  return s;
}

ByteBuffer result(const fs::path& state_dir, const std::string& id) {
  std::ifstream in(state_dir / "results" / (id + ".wandrgb"), std::ios::binary);
  return ByteBuffer(std::istreambuf_iterator<char>(in), {});
}

ByteBuffer run_uninterrupted(Fixture& f, std::uint64_t seed) {
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunner runner(q, f.registry, store);
  std::string id = q.submit(spec(seed));
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  EXPECT_EQ(r->phase, JobPhase::kDone) << r->error;
  EXPECT_EQ(r->step, 8);
  return result(f.state.path(), id);
}

TEST(JobRunner, RunsAJobToADeterministicVideo) {
  Fixture f;
  ByteBuffer a = run_uninterrupted(f, 42);
  ByteBuffer b = run_uninterrupted(f, 42);
  ByteBuffer c = run_uninterrupted(f, 43);
  ASSERT_GT(a.size(), 32u * 24 * 9 * 3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(JobRunner, ShutdownMidJobResumesFromCheckpointBitwiseIdentical) {
  Fixture f;
  ByteBuffer reference = run_uninterrupted(f, 7);

  test::TempDir state;
  std::string id;
  {
    JobQueue q(state.path());
    CheckpointStore store(state.path());
    JobRunner runner(q, f.registry, store);
    id = q.submit(spec(7));
    // Stop for shutdown once step 3 is checkpointed (as SIGTERM would).
    q.subscribe([&](const JobRecord& r, const std::string& kind) {
      if (kind == "step" && r.step == 3) q.stop_running();
    });
    runner.run_one(*q.try_next());
    auto r = q.get(id);
    EXPECT_EQ(r->phase, JobPhase::kQueued);
    EXPECT_EQ(r->step, 3);
    EXPECT_TRUE(store.load(id).has_value());
  }
  JobQueue q(state.path());  // a new process
  CheckpointStore store(state.path());
  JobRunner runner(q, f.registry, store);
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  ASSERT_EQ(r->phase, JobPhase::kDone) << r->error;
  EXPECT_EQ(r->resumed_from_step, 3);
  EXPECT_EQ(result(state.path(), id), reference);
  EXPECT_FALSE(store.load(id).has_value());  // checkpoint dropped when done
}

TEST(JobRunner, CancelRunningStopsAtABlockBoundaryAndDropsTheCheckpoint) {
  Fixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunner runner(q, f.registry, store);
  std::string id = q.submit(spec(1));
  q.subscribe([&](const JobRecord& r, const std::string& kind) {
    if (kind == "step" && r.step == 2) q.cancel(r.id);
  });
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  EXPECT_EQ(r->phase, JobPhase::kCancelled);
  EXPECT_EQ(r->step, 2);
  EXPECT_FALSE(store.load(id).has_value());
  EXPECT_FALSE(fs::exists(f.state.path() / "results" / (id + ".wandrgb")));
}

TEST(JobRunner, ThreadedRunnerDrainsTheQueueAndStops) {
  Fixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunner runner(q, f.registry, store);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  q.subscribe([&](const JobRecord& r, const std::string&) {
    if (r.phase == JobPhase::kDone) {
      std::lock_guard<std::mutex> lock(mu);
      ++done;
      cv.notify_all();
    }
  });
  runner.start();
  for (int i = 0; i < 3; ++i) q.submit(spec(i));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return done == 3; }));
  }
  runner.stop();
  EXPECT_EQ(q.counts().done, 3);
}

TEST(JobRunner, UnknownModelFailsTheJobWithAReason) {
  Fixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunner runner(q, f.registry, store);
  JobSpec s = spec(1);
  s.model = "missing";
  std::string id = q.submit(s);
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  EXPECT_EQ(r->phase, JobPhase::kFailed);
  EXPECT_NE(r->error.find("missing"), std::string::npos) << r->error;
}

// ---- Job-parallel (issue 7): several device slots, one worker each -------------------

// A fake model whose jobs use width * height * frames * 64 bytes of their slot's device.
constexpr std::uint64_t kBytesPerVoxel = 64;

struct MultiFixture {
  test::TempDir model;
  test::TempDir state;
  PipelineRegistry registry;
  std::shared_ptr<FakeDeviceMeter> meter = std::make_shared<FakeDeviceMeter>();
  MultiFixture() {
    std::ofstream(model.path() / kFakeModelMarker) << R"({"step_ms": 24, "blocks": 2, "bytes_per_voxel": 64})";
    register_fake_pipeline(registry, meter);
    registry.add_model("fake", model.path());
  }
};

// Three fake cards: 1, 2 and 4 MiB ("12 GB", "24 GB", "80 GB" in miniature).
std::vector<DeviceSlot> three_cards() {
  return {{0, 1ull << 20, "small"}, {1, 2ull << 20, "medium"}, {2, 4ull << 20, "big"}};
}

// A job of w x h, 9 frames: 32x24 -> 432 KiB (fits all), 64x32 -> 1.125 MiB (medium, big),
// 96x48 -> 2.53 MiB (big only), 128x128 -> 9 MiB (none).
JobSpec sized(int w, int h, int priority, const std::string& prompt) {
  JobSpec s = spec(1);
  s.width = w;
  s.height = h;
  s.steps = 4;
  s.priority = priority;
  s.prompt = prompt;
  return s;
}

JobRunnerOptions three_card_options() {
  JobRunnerOptions o;
  o.slots = three_cards();
  o.estimator = [](const JobSpec& s) { return fake_job_peak_bytes(s, kBytesPerVoxel); };
  return o;
}

bool wait_until_terminal(JobQueue& q, int n, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto c = q.counts();
    if (c.done + c.failed + c.cancelled >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(JobRunnerMultiDevice, QueuedJobsRunConcurrentlyWithinEachDeviceBudget) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunner runner(q, f.registry, store, three_card_options());
  ASSERT_EQ(runner.slots().size(), 3u);
  // Submitted before the workers start: each worker's picks follow priority.
  std::map<std::string, std::uint64_t> peak_of_prompt;
  std::map<std::string, int> priority_of_prompt;
  const struct {
    int w, h, prio;
  } jobs[] = {{32, 24, 0}, {96, 48, 1}, {64, 32, 5}, {32, 24, 3}, {96, 48, 2}, {32, 24, 7},
              {64, 32, 0}, {32, 24, 1}, {64, 32, 4}, {32, 24, 2}};
  int n = 0;
  for (const auto& j : jobs) {
    const std::string prompt = "job" + std::to_string(n++);
    JobSpec s = sized(j.w, j.h, j.prio, prompt);
    peak_of_prompt[prompt] = fake_job_peak_bytes(s, kBytesPerVoxel);
    priority_of_prompt[prompt] = j.prio;
    q.submit(s);
  }
  runner.start();
  ASSERT_TRUE(wait_until_terminal(q, n, std::chrono::seconds(60)));
  runner.stop();
  EXPECT_EQ(q.counts().done, n);
  EXPECT_GE(f.meter->max_concurrent_jobs(), 2) << "the three workers never overlapped";

  std::map<std::string, int> slot_of_prompt;
  int ran = 0;
  for (const DeviceSlot& d : three_cards()) {
    const FakeDeviceMeter::SlotUse u = f.meter->slot(d.index);
    EXPECT_LE(u.peak_bytes, d.vram_budget_bytes) << d.name << " over its budget";
    EXPECT_EQ(u.current_bytes, 0u) << d.name;
    int last_priority = 1 << 30;
    for (const std::string& p : u.prompts) {
      slot_of_prompt[p] = d.index;
      EXPECT_LE(peak_of_prompt[p], d.vram_budget_bytes) << p << " placed on " << d.name;
      EXPECT_LE(priority_of_prompt[p], last_priority) << d.name << " took " << p << " out of priority order";
      last_priority = priority_of_prompt[p];
      ++ran;
    }
  }
  EXPECT_EQ(ran, n);
  EXPECT_EQ(slot_of_prompt["job1"], 2) << "a big job runs on the big card";
  EXPECT_EQ(slot_of_prompt["job4"], 2);
  EXPECT_FALSE(f.meter->slot(0).prompts.empty()) << "the small card took no job";
  // One pipeline per (model, slot).
  auto p0 = f.registry.pipeline("fake", three_cards()[0]);
  auto p2 = f.registry.pipeline("fake", three_cards()[2]);
  EXPECT_NE(p0, p2);
  EXPECT_EQ(dynamic_cast<FakePipeline&>(*p2).slot().name, "big");
}

TEST(JobRunnerMultiDevice, BigJobWaitsForTheBigCardAndATooBigJobFailsNamingSizes) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunnerOptions o = three_card_options();
  o.slots = {three_cards()[0], three_cards()[2]};  // 1 MiB and 4 MiB
  JobRunner runner(q, f.registry, store, o);
  // The big card is busy with two big jobs first (highest priority); the third big job
  // waits for it while the small card drains the small ones.
  q.submit(sized(96, 48, 9, "big-a"));
  q.submit(sized(96, 48, 9, "big-b"));
  q.submit(sized(96, 48, 0, "big-c"));
  const std::string too_big = q.submit(sized(128, 128, 0, "huge"));
  for (int i = 0; i < 3; ++i) q.submit(sized(32, 24, 1, "small" + std::to_string(i)));
  runner.start();
  ASSERT_TRUE(wait_until_terminal(q, 7, std::chrono::seconds(60)));
  runner.stop();
  EXPECT_EQ(q.counts().done, 6);
  auto r = q.get(too_big);
  ASSERT_EQ(r->phase, JobPhase::kFailed);
  EXPECT_NE(r->error.find("out_of_memory"), std::string::npos) << r->error;
  EXPECT_NE(r->error.find(format_bytes(128ull * 128 * 9 * kBytesPerVoxel)), std::string::npos) << r->error;
  EXPECT_NE(r->error.find("small 1.0 MiB"), std::string::npos) << r->error;
  EXPECT_NE(r->error.find("big 4.0 MiB"), std::string::npos) << r->error;
  const auto big = f.meter->slot(2).prompts;
  EXPECT_EQ(std::count(big.begin(), big.end(), "big-c"), 1) << "big-c did not wait for the big card";
  EXPECT_LE(f.meter->slot(0).peak_bytes, 1ull << 20);
  EXPECT_LE(f.meter->slot(2).peak_bytes, 4ull << 20);
}

TEST(JobRunnerMultiDevice, DuplicateSlotIndexIsAConfigError) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunnerOptions o;
  o.slots = {{0, 0, "a"}, {0, 0, "b"}};
  EXPECT_THROW(JobRunner(q, f.registry, store, o), Error);
}

TEST(FakePipeline, LoadStateRejectsAWrongBlob) {
  FakePipeline p({0, 2, 16});
  CancelToken token;
  auto st = p.prepare(spec(1), token);
  StateBlobs blobs;
  p.save_state(*st, blobs);
  blobs["latent"].pop_back();
  try {
    p.load_state(*st, blobs);
    FAIL() << "accepted a short latent";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
    EXPECT_NE(std::string(e.what()).find("latent"), std::string::npos);
  }
}

}  // namespace
}  // namespace wand::sched
