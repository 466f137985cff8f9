#include <fstream>

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
