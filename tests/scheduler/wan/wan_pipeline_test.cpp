// WanPipeline under the real JobRunner: a tiny t2v job runs to an encoded
// video, is deterministic, resumes bitwise identically after a shutdown at a
// step boundary, stops when cancelled, and bad specs are refused by validate().
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/generator.h"
#include "scheduler/wan/streamed_dit.h"
#include "model/video.h"
#include "scheduler/job_runner.h"
#include "scheduler/wan/wan_pipeline.h"
#include "tests/model/tiny_model.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

namespace fs = std::filesystem;

// A tiny t2v model written by wand-make-model (DiT experts, umT5, tokenizer,
// VAE) and a registry with the real "wan" factory.
struct Fixture {
  test::TempDir model;
  PipelineRegistry registry;
  Fixture() {
    model::testing::write_tiny_wan_dir(model.path(), "tiny-t2v", 3);
    register_wan_pipeline(registry);
    registry.add_model("tiny", model.path());
  }
};

JobSpec spec(std::uint64_t seed) {
  JobSpec s;
  s.model = "tiny";
  s.task = "t2v";
  s.prompt = "a lighthouse in a storm";
  s.negative = "";  // the official default negative prompt
  s.width = 48;
  s.height = 32;
  s.frames = 5;
  s.steps = 4;
  s.seed = seed;
  return s;
}

std::string ext() { return model::have_libav() ? "mp4" : "avi"; }

ByteBuffer result(CheckpointStore& store, const std::string& id) {
  std::ifstream in(store.result_path(id, ext()), std::ios::binary);
  return ByteBuffer(std::istreambuf_iterator<char>(in), {});
}

ByteBuffer run_uninterrupted(Fixture& f, const fs::path& state, std::uint64_t seed) {
  JobQueue q(state);
  CheckpointStore store(state);
  JobRunner runner(q, f.registry, store);
  std::string id = q.submit(spec(seed));
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  EXPECT_EQ(r->phase, JobPhase::kDone) << r->error;
  EXPECT_EQ(r->step, 4);
  return result(store, id);
}

TEST(WanPipeline, RunsAJobToADeterministicVideo) {
  Fixture f;
  test::TempDir s1, s2, s3;
  ByteBuffer a = run_uninterrupted(f, s1.path(), 42);
  ByteBuffer b = run_uninterrupted(f, s2.path(), 42);
  ByteBuffer c = run_uninterrupted(f, s3.path(), 43);
  ASSERT_GT(a.size(), 100u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(WanPipeline, ShutdownMidJobResumesBitwiseIdentical) {
  Fixture f;
  test::TempDir ref_state;
  ByteBuffer reference = run_uninterrupted(f, ref_state.path(), 7);
  test::TempDir state;
  std::string id;
  {
    JobQueue q(state.path());
    CheckpointStore store(state.path());
    JobRunner runner(q, f.registry, store);
    id = q.submit(spec(7));
    q.subscribe([&](const JobRecord& r, const std::string& kind) {
      if (kind == "step" && r.step == 2) q.stop_running();
    });
    runner.run_one(*q.try_next());
    auto r = q.get(id);
    EXPECT_EQ(r->phase, JobPhase::kQueued);
    EXPECT_EQ(r->step, 2);
    ASSERT_TRUE(store.load(id).has_value());
    EXPECT_EQ(store.load(id)->blobs.count("sampler"), 1u);
  }
  // A new process: fresh registry, queue and runner.
  Fixture g;
  JobQueue q(state.path());
  CheckpointStore store(state.path());
  JobRunner runner(q, f.registry, store);
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  ASSERT_EQ(r->phase, JobPhase::kDone) << r->error;
  EXPECT_EQ(r->resumed_from_step, 2);
  EXPECT_EQ(result(store, id), reference);
}

TEST(WanPipeline, CancelStopsTheJob) {
  Fixture f;
  test::TempDir state;
  JobQueue q(state.path());
  CheckpointStore store(state.path());
  JobRunner runner(q, f.registry, store);
  std::string id = q.submit(spec(1));
  q.subscribe([&](const JobRecord& r, const std::string& kind) {
    if (kind == "step" && r.step == 1) q.cancel(r.id);
  });
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  EXPECT_EQ(r->phase, JobPhase::kCancelled);
  EXPECT_EQ(r->step, 1);
  EXPECT_FALSE(fs::exists(store.result_path(id, ext())));
}

TEST(WanPipeline, ValidateAndRegistry) {
  Fixture f;
  auto p = f.registry.pipeline("tiny");
  p->validate(spec(1));
  JobSpec s = spec(1);
  s.width = 40;  // not a multiple of 16
  try {
    p->validate(s);
    FAIL() << "accepted width 40";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadRequest);
    EXPECT_NE(std::string(e.what()).find("width"), std::string::npos) << e.what();
  }
  s = spec(1);
  s.task = "i2v";
  EXPECT_THROW(p->validate(s), Error);
  s = spec(1);
  s.frames = 8;
  EXPECT_THROW(p->validate(s), Error);

  EXPECT_TRUE(probe_wan_dir(f.model.path()));
  test::TempDir empty;
  EXPECT_FALSE(probe_wan_dir(empty.path()));
  EXPECT_THROW(f.registry.add_model("none", empty.path()), Error);
  EXPECT_TRUE(f.registry.has_model("tiny"));
}

// Streamed mode: the same model through a registry whose "wan" factory streams the DiT
// blocks through a CPU device tier of two blocks (smaller than the model's four).
struct StreamedFixture {
  test::TempDir spool;
  std::unique_ptr<memory::MemoryPool> pool;
  PipelineRegistry registry;
  StreamedFixture(const fs::path& model_dir, std::uint64_t device_bytes) {
    nlohmann::json j = {{"host", {{"bytes", 64ull << 20}, {"pinned", false}}},
                        {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", device_bytes}, {"backend", "cpu"}}})},
                        {"io", {{"engine", "psync"}}}};
    pool = std::make_unique<memory::MemoryPool>(memory::PoolConfig::from_json(j));
    WanStreamContext c;
    c.pool = pool.get();
    c.device_tier = pool->device_tier(0);
    c.pack_dir = spool.path().string();
    c.name = "tiny";
    register_wan_pipeline(registry, c);
    registry.add_model("tiny", model_dir);
  }
};

// Device copy bytes of the tiny model's largest block (a scratch pool, 32 MiB tier).
std::uint64_t tiny_block_bytes(const fs::path& model_dir) {
  StreamedFixture probe(model_dir, 32ull << 20);
  auto p = std::dynamic_pointer_cast<WanPipeline>(probe.registry.pipeline("tiny"));
  EXPECT_TRUE(p && p->streamed());
  return p->streamed_dit()->max_block_bytes();
}

TEST(WanPipeline, StreamedModeGivesTheResidentVideoAndResumesBitwise) {
  Fixture f;
  test::TempDir ref_state;
  const ByteBuffer reference = run_uninterrupted(f, ref_state.path(), 7);
  const std::uint64_t block = tiny_block_bytes(f.model.path());
  StreamedFixture sf(f.model.path(), 2 * block);

  // Uninterrupted streamed run: the resident run's bytes.
  {
    test::TempDir state;
    JobQueue q(state.path());
    CheckpointStore store(state.path());
    JobRunner runner(q, sf.registry, store);
    std::string id = q.submit(spec(7));
    runner.run_one(*q.try_next());
    auto r = q.get(id);
    ASSERT_EQ(r->phase, JobPhase::kDone) << r->error;
    EXPECT_EQ(result(store, id), reference);
    auto p = std::dynamic_pointer_cast<WanPipeline>(sf.registry.pipeline("tiny"));
    ASSERT_TRUE(p && p->streamed());
    const nlohmann::json st = p->stream_stats();
    EXPECT_EQ(st["total"]["steps"].get<int>(), 4);
    EXPECT_GT(st["total"]["device_bytes_in"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(p->generator().block_calls(), 0);
    EXPECT_EQ(st["jobs"].get<int>(), 1);                    // one executor job
    EXPECT_EQ(p->t5_stats()["encodes"].get<int>(), 1);      // both prompts in one encode
  }
  // Stopped at step 2, resumed: the executor's schedule starts at step 2.
  test::TempDir state;
  std::string id;
  {
    JobQueue q(state.path());
    CheckpointStore store(state.path());
    JobRunner runner(q, sf.registry, store);
    id = q.submit(spec(7));
    q.subscribe([&](const JobRecord& r, const std::string& kind) {
      if (kind == "step" && r.step == 2) q.stop_running();
    });
    runner.run_one(*q.try_next());
    ASSERT_EQ(q.get(id)->phase, JobPhase::kQueued);
  }
  StreamedFixture fresh(f.model.path(), 2 * block);  // a new process: new pool, same pack
  JobQueue q(state.path());
  CheckpointStore store(state.path());
  JobRunner runner(q, fresh.registry, store);
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  ASSERT_EQ(r->phase, JobPhase::kDone) << r->error;
  EXPECT_EQ(r->resumed_from_step, 2);
  EXPECT_EQ(result(store, id), reference);
  auto p = std::dynamic_pointer_cast<WanPipeline>(fresh.registry.pipeline("tiny"));
  EXPECT_EQ(p->stream_stats()["job"]["steps"].get<int>(), 2);  // steps 2 and 3 only
  // The resume did none of prepare()'s work it would discard (Pipeline::resume): the
  // prompts were not encoded (the checkpoint has the embeddings) and the executor's job
  // was built once, from step 2.
  EXPECT_EQ(p->t5_stats()["encodes"].get<int>(), 0);
  EXPECT_EQ(p->stream_stats()["jobs"].get<int>(), 1);
}

// Note [Videos in the host tier]: the video's buffer is a blob of the host tier while
// the tensor lives (its bytes inside the tier's used bytes), gone with it; a video larger than
// the tier gets no buffer (the decode then allocates its own) and leaves no blob behind.
TEST(WanPipeline, VideosBorrowTheHostTier) {
  nlohmann::json j = {{"host", {{"bytes", 8ull << 20}, {"pinned", false}}}, {"io", {{"engine", "psync"}}}};
  memory::MemoryPool pool(memory::PoolConfig::from_json(j));
  const std::uint64_t before = pool.status_json()["tiers"][0]["used_bytes"].get<std::uint64_t>();
  const std::size_t blobs = pool.status_json()["blobs"].get<std::size_t>();
  {
    at::Tensor v = host_tier_video(pool, "t", {3, 5, 64, 64});  // 240 KiB
    ASSERT_TRUE(v.defined());
    EXPECT_TRUE(v.is_contiguous());
    EXPECT_EQ(v.scalar_type(), at::kFloat);
    EXPECT_EQ(v.numel(), 3 * 5 * 64 * 64);
    // (The blob's name carries a process-wide sequence number: other tests' videos came first.)
    EXPECT_EQ(pool.status_json()["blobs"].get<std::size_t>(), blobs + 1);
    EXPECT_GE(pool.status_json()["tiers"][0]["used_bytes"].get<std::uint64_t>(), before + v.numel() * 4);
    v.fill_(1.5f);  // the bytes are writable
    EXPECT_EQ(v.sum().item<double>(), 1.5 * v.numel());
  }
  EXPECT_EQ(pool.status_json()["tiers"][0]["used_bytes"].get<std::uint64_t>(), before)
      << "the blob outlived its tensor";
  EXPECT_EQ(pool.status_json()["blobs"].get<std::size_t>(), blobs) << "the blob outlived its tensor";
  const at::Tensor big = host_tier_video(pool, "t", {3, 9, 512, 512});  // 27 MiB > 8 MiB
  EXPECT_FALSE(big.defined());
  EXPECT_EQ(pool.status_json()["tiers"][0]["used_bytes"].get<std::uint64_t>(), before) << "a refused video left bytes";
  EXPECT_EQ(pool.status_json()["blobs"].get<std::size_t>(), blobs) << "a refused video left its blob";
}

TEST(WanPipeline, StreamedModeRefusesADeviceTierBelowTwoBlocks) {
  Fixture f;
  const std::uint64_t block = tiny_block_bytes(f.model.path());
  StreamedFixture sf(f.model.path(), block);
  test::TempDir state;
  JobQueue q(state.path());
  CheckpointStore store(state.path());
  JobRunner runner(q, sf.registry, store);
  std::string id = q.submit(spec(7));
  runner.run_one(*q.try_next());
  auto r = q.get(id);
  EXPECT_EQ(r->phase, JobPhase::kFailed);
  EXPECT_NE(r->error.find("two blocks"), std::string::npos) << r->error;
  EXPECT_NE(r->error.find(std::to_string(block) + " bytes each"), std::string::npos) << r->error;
}

}  // namespace
}  // namespace wand::sched
