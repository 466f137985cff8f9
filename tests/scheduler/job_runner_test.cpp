#include <algorithm>
#include <cstdio>
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

// Note [Job stages] (job_runner.cpp): a running job says what it does, without journal writes.
TEST(JobRunner, PublishesTheStagesOfAJobAndItsVideoSize) {
  Fixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunner runner(q, f.registry, store);
  std::vector<std::string> stages;
  q.subscribe([&](const JobRecord& r, const std::string& kind) {
    if (kind == "stage") stages.push_back(r.stage);
  });
  std::string id = q.submit(spec(1));
  runner.run_one(*q.try_next());
  EXPECT_EQ(stages, (std::vector<std::string>{"loading", "encoding", "denoising", "decoding", "writing"}));
  auto r = q.get(id);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->phase, JobPhase::kDone);
  EXPECT_EQ(r->stage, "") << "no stage once finished";
  EXPECT_EQ(r->video_width, 32);
  EXPECT_EQ(r->video_height, 24);
  EXPECT_EQ(r->video_frames, 9);
  EXPECT_EQ(r->ran_on, "") << "the default slot is not reported";
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

// Issue 15 item 9: LibTorch's out-of-memory (c10::OutOfMemoryError, a std::exception whose
// text is the sizes, then a C++ backtrace with addresses) reaches the user as the typed
// out_of_memory error with the phase (the job's stage), the step and the first line (the bytes); another c10
// error loses its backtrace too.
class ThrowingPipeline : public FakePipeline {
 public:
  ThrowingPipeline(std::string what, bool in_decode)
      : FakePipeline(FakePipelineOptions{0, 3}), what_(std::move(what)), in_decode_(in_decode) {}
  void step(JobState& state, CancelToken& token) override {
    if (!in_decode_ && completed_steps(state) == 2) throw std::runtime_error(what_);
    FakePipeline::step(state, token);
  }
  Video decode(JobState& state, CancelToken& token) override {
    if (in_decode_) throw std::runtime_error(what_);
    return FakePipeline::decode(state, token);
  }

 private:
  std::string what_;
  bool in_decode_;
};

TEST(JobRunner, ALibTorchOutOfMemoryIsTheTypedErrorWithoutABacktrace) {
  const std::string backtrace =
      "\nException raised from malloc at ../c10/cuda/CUDACachingAllocator.cpp:913 (most recent call first):\n"
      "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x6b (0x7f3a2c1e5d8b in libc10.so)\n";
  const std::string oom = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)";
  struct Case {
    const char* name;
    std::string what;
    bool in_decode;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"oom-step", oom + backtrace, false, {"out_of_memory: while denoising, at step 2 of 8: ", "Tried to allocate 2.00 GiB"}},
      {"oom-decode", oom + backtrace, true, {"out_of_memory: while decoding, at step 8 of 8: ", "Tried to allocate 2.00 GiB"}},
      {"c10-other", "Expected all tensors to be on the same device" + backtrace, false,
       {"Expected all tensors to be on the same device"}},
  };
  for (const Case& c : cases) {
    test::TempDir model, state;
    std::ofstream(model.path() / "throwing.json") << "{}";
    PipelineRegistry registry;
    const std::string what = c.what;
    const bool in_decode = c.in_decode;
    registry.add_factory(PipelineFactory{
        "throwing",
        [](const fs::path& dir) { return fs::exists(dir / "throwing.json"); },
        [what, in_decode](const fs::path&) -> std::unique_ptr<Pipeline> {
          return std::make_unique<ThrowingPipeline>(what, in_decode);
        },
        encode_wandrgb});
    registry.add_model("fake", model.path());
    JobQueue q(state.path());
    CheckpointStore store(state.path());
    JobRunner runner(q, registry, store);
    const std::string id = q.submit(spec(1));
    runner.run_one(*q.try_next());
    auto r = q.get(id);
    ASSERT_EQ(r->phase, JobPhase::kFailed) << c.name;
    for (const std::string& part : c.says) EXPECT_NE(r->error.find(part), std::string::npos) << c.name << ": " << r->error;
    EXPECT_EQ(r->error.find("Exception raised from"), std::string::npos) << c.name << ": " << r->error;
    EXPECT_EQ(r->error.find("0x7f3a"), std::string::npos) << c.name << ": addresses in " << r->error;
    std::printf("[ figures ] %s: %s\n", c.name, r->error.c_str());
  }
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

// ---- Card groups (issue 7): one job on several cards, Note [Card groups] --------------

template <class Pred>
bool wait_for(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

// A group chooser that records its calls and groups the jobs `wants` says yes to, on
// the first two idle cards (the taking card first).
struct RecordingChooser {
  struct Call {
    std::string prompt;
    std::vector<std::string> idle;  // names, in the order given
    std::size_t waiting = 0;
    std::string group;               // key, "" = no group
  };
  std::function<bool(const JobSpec& spec, const std::vector<DeviceSlot>& idle, std::size_t waiting)> wants;
  std::mutex mu;
  std::vector<Call> calls;

  GroupChooser chooser() {
    return [this](const JobSpec& spec, const std::vector<DeviceSlot>& idle, std::size_t waiting) {
      std::optional<DeviceGroup> g;
      if (idle.size() >= 2 && wants(spec, idle, waiting)) g = DeviceGroup{{idle[0], idle[1]}, "cfg-parallel"};
      Call c{spec.prompt, {}, waiting, g ? g->key() : ""};
      for (const auto& d : idle) c.idle.push_back(d.name);
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back(c);
      return g;
    };
  }
  std::vector<Call> snapshot() {
    std::lock_guard<std::mutex> lock(mu);
    return calls;
  }
};

std::vector<DeviceSlot> three_unlimited() { return {{0, 0, "card0"}, {1, 0, "card1"}, {2, 0, "card2"}}; }

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST(JobRunnerGroups, ChooserSeesIdleCardsTakingFirstAndTheJobRunsOnItsGroup) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  RecordingChooser rc;
  rc.wants = [](const JobSpec& s, const std::vector<DeviceSlot>&, std::size_t) { return s.priority == 1; };
  JobRunnerOptions o;
  o.slots = three_cards();
  o.group_chooser = rc.chooser();
  JobRunner runner(q, f.registry, store, o);
  std::string seen_placement;
  q.subscribe([&](const JobRecord& r, const std::string& kind) {
    if (kind == "step" && r.step == 1) seen_placement = runner.placements()[r.id];
  });
  const std::string grouped = q.submit(sized(32, 24, 1, "same"));
  const std::string single = q.submit(sized(32, 24, 0, "same"));
  // Taken by the medium card's worker (slot position 1): idle = medium, small, big.
  runner.run_one(*q.try_next(), 1);
  ASSERT_EQ(q.get(grouped)->phase, JobPhase::kDone) << q.get(grouped)->error;
  EXPECT_EQ(seen_placement, "cfg-parallel@1,0");
  auto calls = rc.snapshot();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].idle, (std::vector<std::string>{"medium", "small", "big"}));
  EXPECT_EQ(calls[0].waiting, 1u);
  EXPECT_EQ(f.meter->groups(), (std::vector<std::string>{"cfg-parallel@1,0"}));
  EXPECT_EQ(f.meter->slot(1).prompts, (std::vector<std::string>{"same"}));
  EXPECT_EQ(f.meter->slot(0).prompts, (std::vector<std::string>{"same"}));
  EXPECT_TRUE(f.meter->slot(2).prompts.empty());
  EXPECT_EQ(f.meter->max_concurrent_jobs(), 1);
  // The claim on the small card is gone: its worker runs the next job alone.
  runner.run_one(*q.try_next(), 0);
  ASSERT_EQ(q.get(single)->phase, JobPhase::kDone) << q.get(single)->error;
  calls = rc.snapshot();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].idle, (std::vector<std::string>{"small", "medium", "big"}));
  EXPECT_EQ(calls[1].waiting, 0u);
  EXPECT_EQ(seen_placement, "small");
  EXPECT_EQ(f.meter->slot(0).prompts.size(), 2u);
  EXPECT_TRUE(runner.placements().empty());
  // The same video either way (the fake's result does not depend on its cards).
  EXPECT_EQ(result(f.state.path(), grouped), result(f.state.path(), single));
}

TEST(JobRunnerGroups, AChooserThatThrowsOrReturnsABadGroupFailsTheJob) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunnerOptions o;
  o.slots = three_cards();
  int mode = 0;
  o.group_chooser = [&mode](const JobSpec&, const std::vector<DeviceSlot>& idle,
                            std::size_t) -> std::optional<DeviceGroup> {
    if (mode == 0) throw Error(ErrorCode::kConfig, "no plan for this job");
    if (mode == 1) return DeviceGroup{{idle[1], idle[2]}, "cfg-parallel"};          // without the taker
    if (mode == 2) return DeviceGroup{{idle[0]}, "single"};                         // one member
    return DeviceGroup{{idle[0], DeviceSlot{7, 0, "ghost"}}, "cfg-parallel"};       // not a slot
  };
  JobRunner runner(q, f.registry, store, o);
  const char* expect[] = {"no plan for this job", "without the taking card 0", "1 member(s)", "card 7 is not idle"};
  for (mode = 0; mode < 4; ++mode) {
    const std::string id = q.submit(sized(32, 24, 0, "m" + std::to_string(mode)));
    runner.run_one(*q.try_next(), 0);
    auto r = q.get(id);
    ASSERT_EQ(r->phase, JobPhase::kFailed) << mode;
    EXPECT_NE(r->error.find(expect[mode]), std::string::npos) << r->error;
    EXPECT_NE(r->error.find(mode == 0 ? "config" : "internal"), std::string::npos) << r->error;
  }
  EXPECT_TRUE(f.meter->groups().empty());
  EXPECT_TRUE(runner.placements().empty());
}

TEST(JobRunnerGroups, AWorkerWhoseTakeRacedAClaimHandsTheJobBack) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  JobRunnerOptions o;
  o.slots = three_cards();
  std::optional<JobQueue::Started> raced;
  o.group_chooser = [&](const JobSpec& s, const std::vector<DeviceSlot>& idle,
                        std::size_t) -> std::optional<DeviceGroup> {
    if (s.prompt != "grouped") return std::nullopt;
    raced = q.try_next();  // the small card's worker takes a job just before the claim
    return DeviceGroup{{idle[0], idle[1]}, "cfg-parallel"};  // medium + small
  };
  JobRunner runner(q, f.registry, store, o);
  const std::string grouped = q.submit(sized(32, 24, 1, "grouped"));
  const std::string other = q.submit(sized(32, 24, 0, "other"));
  JobPhase other_phase_after = JobPhase::kRunning;
  q.subscribe([&](const JobRecord& r, const std::string& kind) {
    if (kind == "step" && r.id == grouped && r.step == 1 && raced) {
      runner.run_one(*raced, 0);  // ... and marks itself busy after the claim
      other_phase_after = q.get(other)->phase;
      raced.reset();
    }
  });
  runner.run_one(*q.try_next(), 1);
  ASSERT_EQ(q.get(grouped)->phase, JobPhase::kDone) << q.get(grouped)->error;
  EXPECT_EQ(other_phase_after, JobPhase::kQueued) << "the claimed card ran a job during the group's";
  EXPECT_EQ(q.get(other)->phase, JobPhase::kQueued);
  EXPECT_EQ(f.meter->slot(0).prompts, (std::vector<std::string>{"grouped"}));
  runner.run_one(*q.try_next(), 0);  // released: the small card runs it now
  EXPECT_EQ(q.get(other)->phase, JobPhase::kDone) << q.get(other)->error;
  EXPECT_EQ(f.meter->slot(0).prompts, (std::vector<std::string>{"grouped", "other"}));
}

TEST(JobRunnerGroups, LoneJobRunsGroupedWhileTheThirdCardStaysUsable) {
  test::TempDir model;
  std::ofstream(model.path() / kFakeModelMarker) << R"({"step_ms": 60, "blocks": 2, "bytes_per_voxel": 1})";
  PipelineRegistry registry;
  auto meter = std::make_shared<FakeDeviceMeter>();
  register_fake_pipeline(registry, meter);
  registry.add_model("fake", model.path());
  test::TempDir state;
  JobQueue q(state.path());
  CheckpointStore store(state.path());
  RecordingChooser rc;
  rc.wants = [](const JobSpec& s, const std::vector<DeviceSlot>&, std::size_t waiting) {
    return waiting == 0 && s.prompt == "lone";
  };
  JobRunnerOptions o;
  o.slots = three_unlimited();
  o.group_chooser = rc.chooser();
  JobRunner runner(q, registry, store, o);
  runner.start();
  auto job = [](const std::string& prompt, int steps) {
    JobSpec s = sized(32, 24, 0, prompt);
    s.steps = steps;
    return s;
  };
  const std::string lone = q.submit(job("lone", 12));  // ~0.7 s on two cards
  std::string key;
  ASSERT_TRUE(wait_for(
      [&] {
        key = runner.placements()[lone];
        return key.find('@') != std::string::npos;
      },
      std::chrono::seconds(10)))
      << "the lone job was not grouped: " << key;
  auto calls = rc.snapshot();
  ASSERT_EQ(calls.size(), 1u);
  ASSERT_EQ(calls[0].idle.size(), 3u);
  const std::string taker = calls[0].idle[0], claimed = calls[0].idle[1], free_card = calls[0].idle[2];
  EXPECT_EQ(key, "cfg-parallel@" + taker.substr(4) + "," + claimed.substr(4));
  // A job submitted meanwhile runs on the unclaimed card, never on the claimed one.
  const std::string second = q.submit(job("second", 20));  // ~1.2 s
  ASSERT_TRUE(wait_for([&] { return !runner.placements()[second].empty(); }, std::chrono::seconds(10)));
  EXPECT_EQ(runner.placements()[second], free_card);
  // Two more wait: every card is busy or claimed.
  const std::string x = q.submit(job("x", 2));
  const std::string y = q.submit(job("y", 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(q.get(lone)->phase, JobPhase::kRunning) << "the lone job ended too early for this test";
  EXPECT_EQ(q.get(x)->phase, JobPhase::kQueued);
  EXPECT_EQ(q.get(y)->phase, JobPhase::kQueued);
  ASSERT_TRUE(wait_until_terminal(q, 4, std::chrono::seconds(30)));
  runner.stop();
  EXPECT_EQ(q.counts().done, 4);
  const int claimed_index = std::stoi(claimed.substr(4)), taker_index = std::stoi(taker.substr(4));
  const int free_index = std::stoi(free_card.substr(4));
  const auto on_claimed = meter->slot(claimed_index).prompts;
  ASSERT_FALSE(on_claimed.empty());
  EXPECT_EQ(on_claimed[0], "lone");
  EXPECT_FALSE(contains(on_claimed, "second"));
  EXPECT_EQ(meter->slot(free_index).prompts, (std::vector<std::string>{"second"}))
      << "x or y waited for the busy free card instead of the released ones";
  // Released when the lone job ended (JobQueue::wake): x and y ran on the two group cards at once.
  const auto on_taker = meter->slot(taker_index).prompts;
  EXPECT_TRUE((contains(on_claimed, "x") && contains(on_taker, "y")) ||
              (contains(on_claimed, "y") && contains(on_taker, "x")))
      << "the claimed card's worker did not come back";
  EXPECT_EQ(meter->groups(), (std::vector<std::string>{key}));
}

TEST(JobRunnerGroups, ManyQueuedJobsRunJobParallel) {
  MultiFixture f;
  JobQueue q(f.state.path());
  CheckpointStore store(f.state.path());
  RecordingChooser rc;
  rc.wants = [](const JobSpec&, const std::vector<DeviceSlot>&, std::size_t waiting) { return waiting == 0; };
  JobRunnerOptions o;
  o.slots = three_unlimited();
  o.group_chooser = rc.chooser();
  JobRunner runner(q, f.registry, store, o);
  const int n = 6;
  for (int i = 0; i < n; ++i) q.submit(sized(32, 24, 0, "job" + std::to_string(i)));
  runner.start();
  ASSERT_TRUE(wait_until_terminal(q, n, std::chrono::seconds(60)));
  runner.stop();
  EXPECT_EQ(q.counts().done, n);
  const auto calls = rc.snapshot();
  ASSERT_EQ(calls.size(), static_cast<std::size_t>(n));
  // `waiting` is counted when the taker asks (the other workers may have taken jobs since):
  // the first three takes see at least jobs 3..5 queued; only the last two jobs can find
  // none waiting and be grouped.
  int grouped = 0;
  std::size_t most_waiting = 0;
  for (const auto& c : calls) {
    grouped += c.group.empty() ? 0 : 1;
    most_waiting = std::max(most_waiting, c.waiting);
    if (c.prompt == "job0" || c.prompt == "job1" || c.prompt == "job2") {
      EXPECT_GE(c.waiting, 3u) << c.prompt;
      EXPECT_EQ(c.group, "") << c.prompt;
    }
    if (!c.group.empty()) EXPECT_TRUE(c.prompt == "job4" || c.prompt == "job5") << c.prompt << " " << c.group;
  }
  EXPECT_LE(most_waiting, static_cast<std::size_t>(n - 1));
  EXPECT_LE(grouped, 2);
  EXPECT_GE(f.meter->max_concurrent_jobs(), 2) << "the workers never overlapped";
  for (int d = 0; d < 3; ++d) EXPECT_FALSE(f.meter->slot(d).prompts.empty()) << "card" << d << " took no job";
}

TEST(JobRunnerGroups, ClaimsAreReleasedAfterFailureAndCancel) {
  test::TempDir model;
  std::ofstream(model.path() / kFakeModelMarker) << R"({"step_ms": 60, "blocks": 2, "bytes_per_voxel": 1})";
  PipelineRegistry registry;
  auto meter = std::make_shared<FakeDeviceMeter>();
  register_fake_pipeline(registry, meter);
  registry.add_model("fake", model.path());
  test::TempDir state;
  JobQueue q(state.path());
  CheckpointStore store(state.path());
  RecordingChooser rc;
  rc.wants = [](const JobSpec& s, const std::vector<DeviceSlot>&, std::size_t) {
    return s.prompt.rfind("group", 0) == 0;
  };
  JobRunnerOptions o;
  o.slots = three_unlimited();
  o.group_chooser = rc.chooser();
  JobRunner runner(q, registry, store, o);
  runner.start();
  JobSpec bad = sized(30, 24, 0, "group-bad");  // width % 8 != 0: prepare() fails after the claim
  const std::string failed = q.submit(bad);
  ASSERT_TRUE(wait_until_terminal(q, 1, std::chrono::seconds(10)));
  ASSERT_EQ(q.get(failed)->phase, JobPhase::kFailed);
  EXPECT_NE(q.get(failed)->error.find("width"), std::string::npos) << q.get(failed)->error;
  // The runner lets go of a job (placement, slot, claims at once) just after its end is visible.
  ASSERT_TRUE(wait_for([&] { return runner.placements().empty(); }, std::chrono::seconds(5)));
  JobSpec long_job = sized(32, 24, 0, "group-cancel");
  long_job.steps = 100;
  const std::string cancelled = q.submit(long_job);
  ASSERT_TRUE(wait_for([&] { return q.get(cancelled)->step >= 1; }, std::chrono::seconds(10)));
  EXPECT_NE(runner.placements()[cancelled].find("cfg-parallel@"), std::string::npos);
  q.cancel(cancelled);
  ASSERT_TRUE(wait_until_terminal(q, 2, std::chrono::seconds(10)));
  EXPECT_EQ(q.get(cancelled)->phase, JobPhase::kCancelled);
  ASSERT_TRUE(wait_for([&] { return runner.placements().empty(); }, std::chrono::seconds(5)));
  auto calls = rc.snapshot();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].idle.size(), 3u);
  EXPECT_EQ(calls[1].idle.size(), 3u) << "the failed job's claim was not released";
  // Every card takes a job again: three long-enough jobs run on the three cards at once.
  for (int i = 0; i < 3; ++i) {
    JobSpec s = sized(32, 24, 0, "plain" + std::to_string(i));
    s.steps = 6;
    q.submit(s);
  }
  ASSERT_TRUE(wait_until_terminal(q, 5, std::chrono::seconds(30)));
  runner.stop();
  EXPECT_EQ(q.counts().done, 3);
  for (int d = 0; d < 3; ++d) {
    const auto p = meter->slot(d).prompts;
    EXPECT_TRUE(contains(p, "plain0") || contains(p, "plain1") || contains(p, "plain2"))
        << "card" << d << " took no job after the group's failure and cancel";
    EXPECT_EQ(meter->slot(d).current_bytes, 0u);
  }
  EXPECT_TRUE(runner.placements().empty());
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
