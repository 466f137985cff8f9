// WanPipeline group mode (issue 7): one job of the tiny t2v model (two experts) over
// several CPU device tiers of one pool with FakeCollective groups. cfg-parallel on 2
// ranks, ulysses-2 and cfg2xulysses-2 on 4 ranks give the final latents of the
// single-card streamed pipeline within 1e-5 relative (fp32); every pipeline shares one
// StoreCache, so the host tier holds one copy of the model's blocks; a job stopped after
// step 2 and resumed (save_state / load_state) equals the uninterrupted one; bad groups
// are refused naming the numbers; the registry's make_group builds a group pipeline.
// GPU variant: cfg-parallel on 2 cards vs one card in bf16 (skips without 2 GPUs).
#include <gtest/gtest.h>

#include <memory>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/generator.h"
#include "scheduler/cancel_token.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/store_cache.h"
#include "scheduler/wan/streamed_dit.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/wan/wan_pipeline.h"
#include "tests/model/tiny_model.h"
#include "tests/scheduler/test_dir.h"
#ifdef WAND_HAVE_CUDA
#include "memory/cuda/pinned_host.h"
#endif

namespace wand::sched {
namespace {

namespace fs = std::filesystem;

constexpr double kRelTol = 1e-5;

JobSpec spec(std::uint64_t seed) {
  JobSpec s;
  s.model = "tiny";
  s.task = "t2v";
  s.prompt = "a lighthouse in a storm";
  s.width = 48;
  s.height = 32;
  s.frames = 5;
  s.steps = 4;
  s.seed = seed;
  return s;
}

memory::PoolConfig pool_config(int cards, std::uint64_t device_bytes, const std::string& backend = "cpu") {
  nlohmann::json devices = nlohmann::json::array();
  for (int g = 0; g < cards; ++g) devices.push_back({{"index", g}, {"bytes", device_bytes}, {"backend", backend}});
  nlohmann::json j = {{"host", {{"bytes", 64ull << 20}, {"pinned", backend != "cpu"}}},
                      {"devices", devices},
                      {"io", {{"engine", "psync"}}}};
  return memory::PoolConfig::from_json(j);
}

// Runs a job to its end (or to `stop_after` steps, then saves its state into *saved);
// returns the final latent.
at::Tensor run_job(WanPipeline& p, const JobSpec& s, int stop_after = -1, StateBlobs* saved = nullptr) {
  CancelToken token;
  std::unique_ptr<JobState> st = p.prepare(s, token);
  while (p.completed_steps(*st) < p.total_steps(*st)) {
    if (p.completed_steps(*st) == stop_after) {
      p.save_state(*st, *saved);
      return at::Tensor();
    }
    p.step(*st, token);
  }
  return WanPipeline::gen_state(*st).latent.clone();
}

// Resumes a saved job on `p` (prepare + load_state, as the job runner does).
at::Tensor resume_job(WanPipeline& p, const JobSpec& s, const StateBlobs& saved) {
  CancelToken token;
  std::unique_ptr<JobState> st = p.prepare(s, token);
  p.load_state(*st, saved);
  while (p.completed_steps(*st) < p.total_steps(*st)) p.step(*st, token);
  return WanPipeline::gen_state(*st).latent.clone();
}

void expect_close(const at::Tensor& a, const at::Tensor& ref, const std::string& what) {
  ASSERT_TRUE(a.defined()) << what;
  ASSERT_EQ(a.sizes(), ref.sizes()) << what;
  const double scale = ref.abs().max().item<double>();
  const double err = (a.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>();
  ASSERT_GT(scale, 0.0) << what;
  EXPECT_LE(err, kRelTol * scale) << what << ": max abs error " << err << " vs max |ref| " << scale;
}

// The tiny model, one pool of 4 CPU cards (3 block slots each), one store cache.
struct GroupFixture {
  test::TempDir model, spool;
  std::uint64_t block = 0;
  std::unique_ptr<memory::MemoryPool> pool;
  std::shared_ptr<exec::StoreCache> cache;
  GroupFixture() {
    model::testing::write_tiny_wan_dir(model.path(), "tiny-t2v", 3);
    {  // one block's copy on a CPU device tier (a scratch pool)
      memory::MemoryPool scratch(pool_config(1, 32ull << 20));
      WanPipeline probe(model.path(), context(scratch, "probe"));
      block = probe.streamed_dit()->max_block_bytes();
    }
    pool = std::make_unique<memory::MemoryPool>(pool_config(4, 3 * block));
    cache = std::make_shared<exec::StoreCache>(*pool, "shared");
  }
  WanStreamContext context(memory::MemoryPool& p, const std::string& name) const {
    WanStreamContext c;
    c.pool = &p;
    c.device_tier = p.device_tier(0);
    c.pack_dir = spool.path().string();
    c.name = name;
    return c;
  }
  // A group over cards `cards` of the fixture's pool, sharing its cache.
  WanStreamContext group(const std::string& strategy, const std::vector<int>& cards) const {
    WanStreamContext c = context(*pool, strategy);
    c.stores = cache;
    c.strategy = strategy;
    for (int g : cards) c.ranks.push_back({pool->device_tier(g), -1, {}});
    return c;
  }
  // One host copy of the model's blocks (bytes), from a pipeline's stores.
  std::uint64_t one_host_copy(StreamedDit& gd) const {
    std::uint64_t b = 0;
    for (std::size_t e = 0; e < gd.num_experts(); ++e) {
      for (const exec::BlockBlob& x : gd.store(e).blocks()) b += pool->copy_bytes(x.id, pool->host_tier());
    }
    return b;
  }
};

TEST(WanGroup, EveryStrategyGivesTheSingleCardLatentsFromOneHostCopy) {
  GroupFixture f;
  WanStreamContext single = f.context(*f.pool, "single");
  single.stores = f.cache;
  WanPipeline one(f.model.path(), single);
  ASSERT_FALSE(one.grouped());
  const at::Tensor ref = run_job(one, spec(7));
  ASSERT_TRUE(ref.defined());

  struct Case {
    std::string strategy;
    std::vector<int> cards;
  };
  const std::vector<Case> cases = {{"cfg-parallel", {0, 1}}, {"ulysses-2", {2, 3}}, {"cfg2xulysses-2", {0, 1, 2, 3}}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.strategy);
    WanPipeline p(f.model.path(), f.group(c.strategy, c.cards));
    ASSERT_TRUE(p.grouped());
    ASSERT_TRUE(p.streamed());
    EXPECT_EQ(p.streamed_dit()->num_ranks(), static_cast<int>(c.cards.size()));
    expect_close(run_job(p, spec(7)), ref, c.strategy);
    EXPECT_EQ(p.generator().block_calls(), 0);

    const nlohmann::json st = p.stream_stats();
    EXPECT_EQ(st["strategy"].get<std::string>(), c.strategy);
    EXPECT_EQ(st["total"]["steps"].get<int>(), 4);
    EXPECT_TRUE(st["shared_stores"].get<bool>());
    ASSERT_EQ(st["job"]["ranks"].size(), c.cards.size());
    for (std::size_t q = 0; q < c.cards.size(); ++q) {
      EXPECT_EQ(st["job"]["ranks"][q]["blocks_run"].get<int>(), 4 * 2) << "rank " << q;
      EXPECT_GT(st["job"]["ranks"][q]["device_bytes_in"].get<std::uint64_t>(), 0u) << "rank " << q;
      EXPECT_LE(f.pool->tier(f.pool->device_tier(c.cards[q])).stats().bytes_used, 3 * f.block) << "rank " << q;
    }
    // The single-card pipeline and every group stream from the same two stores.
    EXPECT_EQ(f.cache->size(), 2u);
    EXPECT_EQ(&p.streamed_dit()->store(0), &one.streamed_dit()->store(0));
    const memory::TierStats host = f.pool->tier(f.pool->host_tier()).stats();
    EXPECT_EQ(host.bytes_used, f.one_host_copy(*p.streamed_dit())) << "more than one host copy of the blocks";
  }
}

TEST(WanGroup, ResumedGroupJobEqualsTheUninterruptedOne) {
  GroupFixture f;
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {{"cfg-parallel", {0, 1}},
                                                                       {"cfg2xulysses-2", {0, 1, 2, 3}}};
  for (const auto& [strategy, cards] : cases) {
    SCOPED_TRACE(strategy);
    WanPipeline p(f.model.path(), f.group(strategy, cards));
    const at::Tensor whole = run_job(p, spec(11));
    StateBlobs saved;
    EXPECT_FALSE(run_job(p, spec(11), /*stop_after=*/2, &saved).defined());
    ASSERT_EQ(saved.count("latent"), 1u);
    // A new pipeline (a new process would have one): the runner's schedule starts at step 2.
    WanPipeline q(f.model.path(), f.group(strategy, cards));
    const at::Tensor resumed = resume_job(q, spec(11), saved);
    EXPECT_TRUE(at::equal(resumed, whole)) << strategy << ": max diff "
                                           << (resumed - whole).abs().max().item<double>();
    const nlohmann::json st = q.stream_stats();
    for (const auto& r : st["job"]["ranks"]) EXPECT_EQ(r["steps"].get<int>(), 2) << "steps 2 and 3 only";
  }
}

TEST(WanGroup, BadGroupsAreRefusedNamingTheNumbers) {
  GroupFixture f;
  auto refused = [&](const WanStreamContext& c, const std::string& want) {
    try {
      WanPipeline p(f.model.path(), c);
      ADD_FAILURE() << "accepted: " << want;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig) << e.what();
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  refused(f.group("cfg-parallel", {0, 1, 2}), "strategy cfg-parallel needs 2 cards, the group has 3");
  refused(f.group("ulysses-4", {0, 1, 2, 3}), "num_heads 2");  // the tiny model has 2 heads
  refused(f.group("ulysses-x", {0, 1}), "ulysses-x");
  refused(f.group("cfg-parallel", {1, 1}), "ranks 0 and 1 both name device tier");
  WanStreamContext host = f.group("cfg-parallel", {0, 1});
  host.ranks[1].device_tier = f.pool->host_tier();
  refused(host, "rank 1 names tier " + std::to_string(f.pool->host_tier()) + ", not a device tier");
  // A budget that leaves a rank no activation room fails the job before any phase (Note [Job
  // preflight]: the group's card plans are checked like a single card's).
  WanStreamContext tight = f.group("cfg-parallel", {0, 1});
  tight.ranks[1].budget.budget_bytes = 3 * f.block;
  WanPipeline p(f.model.path(), tight);
  CancelToken token;
  try {
    p.prepare(spec(1), token);
    FAIL() << "accepted a budget without activation room";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfMemory) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not fit the card (phase steps)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("leaves no room for activations"), std::string::npos) << e.what();
  }
}

TEST(WanGroup, RegistryMakesGroupPipelinesWithOneStoreCache) {
  GroupFixture f;
  PipelineRegistry reg;
  register_wan_pipeline(reg, f.context(*f.pool, "wan"));
  reg.add_model("tiny", f.model.path());
  ASSERT_TRUE(reg.can_group("tiny"));
  DeviceGroup g{{{0, 0, "fake0"}, {1, 0, "fake1"}}, "cfg-parallel"};
  auto p = std::dynamic_pointer_cast<WanPipeline>(reg.pipeline("tiny", g));
  ASSERT_TRUE(p && p->grouped());
  EXPECT_EQ(p->streamed_dit()->strategy().name(), "cfg-parallel");
  auto s = std::dynamic_pointer_cast<WanPipeline>(reg.pipeline("tiny", DeviceSlot{2, 0, "fake2"}));
  ASSERT_TRUE(s && s->streamed() && !s->grouped());
  // The slot's pipeline and the group's share the stores (one cache per registration).
  EXPECT_EQ(&p->streamed_dit()->store(1), &s->streamed_dit()->store(1));
  const at::Tensor a = run_job(*p, spec(5));
  const at::Tensor b = run_job(*s, spec(5));
  expect_close(a, b, "registry group");
  DeviceGroup bad{{{0, 0, "fake0"}, {9, 0, "fake9"}}, "cfg-parallel"};
  EXPECT_THROW(reg.pipeline("tiny", bad), Error);
}

// Note [Streamed job end]: a job that never decodes (cancelled, failed, stopped) ends its
// executor when its state is dropped, so its host-planning lease on the shared stores
// does not keep another card's job of the model refused.
TEST(WanGroup, AJobDroppedWithoutDecodeReleasesTheSharedStores) {
  GroupFixture f;
  WanStreamContext a = f.context(*f.pool, "a");
  a.stores = f.cache;
  a.host_window_bytes = 2 * f.block;
  WanStreamContext b = a;
  b.name = "b";
  b.device_tier = f.pool->device_tier(1);
  WanPipeline pa(f.model.path(), a), pb(f.model.path(), b);
  const exec::WeightStore* store = &pa.streamed_dit()->store(0);
  ASSERT_EQ(store, &pb.streamed_dit()->store(0));
  {
    CancelToken token;
    std::unique_ptr<JobState> st = pa.prepare(spec(3), token);
    EXPECT_TRUE(pa.streamed_dit()->host_planning()) << "alone on its stores";
    EXPECT_EQ(f.cache->jobs_on(store), 1);
    try {
      pb.prepare(spec(3), token);
      FAIL() << "a job started while another job plans the host tier of its stores";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig);
      EXPECT_NE(std::string(e.what()).find("plans the host tier"), std::string::npos) << e.what();
    }
    pa.step(*st, token);
  }  // dropped after one step, never decoded
  EXPECT_FALSE(pa.streamed_dit()->in_job());
  EXPECT_EQ(f.cache->jobs_on(store), 0);
  EXPECT_TRUE(run_job(pb, spec(3)).defined());
  EXPECT_EQ(f.cache->jobs_on(store), 0);
}

// cfg-parallel on cuda:0 + cuda:1 vs one card (cuda:0), bf16: the final latents agree
// within the multi-GPU tests' bf16 tolerance (relative L2).
TEST(WanGroupGpu, CfgParallelOnTwoCardsMatchesOneCardInBf16) {
#if !defined(WAND_EXEC_TORCH_CUDA) || !defined(WAND_HAVE_CUDA)
  GTEST_SKIP() << "LibTorch without CUDA";
#else
  if (!exec::torch_cuda_available() || at::getNumGPUs() < 2) GTEST_SKIP() << "fewer than 2 GPUs";
  constexpr double kRelL2Tol = 2e-2;  // as tests/scheduler/multigpu/nccl_streamed_test.cpp
  test::TempDir model, spool;
  model::testing::write_tiny_wan_dir(model.path(), "tiny-t2v", 3);
  // bf16 blocks of the tiny model are 108-128 KiB: 3 slots of 128 KiB.
  memory::MemoryPool pool(pool_config(2, 3 * (128ull << 10), "cuda"), memory::cuda::pool_deps());
  auto cache = std::make_shared<exec::StoreCache>(pool, "shared");
  WanStreamContext c;
  c.pool = &pool;
  c.run_dtype = "bf16";
  c.pack_dir = spool.path().string();
  c.stores = cache;
  c.device_tier = pool.device_tier(0);
  c.cuda_device = 0;
  c.name = "one";
  WanPipeline one(model.path(), c);
  const at::Tensor ref = run_job(one, spec(7)).to(at::kDouble).cpu();
  c.name = "two";
  c.strategy = "cfg-parallel";
  c.ranks = {{pool.device_tier(0), 0, {}}, {pool.device_tier(1), 1, {}}};
  WanPipeline two(model.path(), c);
  const at::Tensor out = run_job(two, spec(7)).to(at::kDouble).cpu();
  const double rel = (out - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LE(rel, kRelL2Tol);
  EXPECT_EQ(two.stream_stats()["job"]["ranks"].size(), 2u);
#endif
}

}  // namespace
}  // namespace wand::sched

namespace wand::sched {
namespace {

// Note [Guidance 1 in a group] (scheduler/multigpu/parallel_runner.cpp): a job with guide scale
// 1 runs the cond branch alone on every strategy. The single card gives the reference (one
// forward a step, bitwise the resident cond forward: tests/model/fewstep_test.cpp);
// cfg-parallel, which has nothing to split, runs the same plain forward on each rank (bitwise);
// the Ulysses kinds split it (within the group tolerance).
TEST(WanGroup, GuidanceOneRunsTheCondBranchAloneOnEveryStrategy) {
  GroupFixture f;
  WanStreamContext single = f.context(*f.pool, "single");
  single.stores = f.cache;
  WanPipeline one(f.model.path(), single);
  JobSpec s = spec(7);
  s.guide_scale = {1.0};
  const at::Tensor ref = run_job(one, s);
  ASSERT_TRUE(ref.defined());
  EXPECT_EQ(one.stream_stats()["job"]["forwards"].get<int>(), 4) << one.stream_stats().dump();
  EXPECT_FALSE(at::equal(ref, run_job(one, spec(7)))) << "guidance 1 and the model's scales gave the same latents";

  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"cfg-parallel", {0, 1}}, {"ulysses-2", {2, 3}}, {"cfg2xulysses-2", {0, 1, 2, 3}}};
  for (const auto& [strategy, cards] : cases) {
    SCOPED_TRACE(strategy);
    WanPipeline p(f.model.path(), f.group(strategy, cards));
    const at::Tensor got = run_job(p, s);
    if (strategy == "cfg-parallel") {
      EXPECT_TRUE(at::equal(got, ref));
    } else {
      expect_close(got, ref, strategy);
    }
    EXPECT_EQ(p.generator().block_calls(), 0);
    // Resumed after step 2 (the checkpoint has no negative embedding): the same latents.
    StateBlobs saved;
    WanPipeline q(f.model.path(), f.group(strategy, cards));
    run_job(q, s, 2, &saved);
    EXPECT_TRUE(at::equal(resume_job(q, s, saved), got));
  }
}

}  // namespace
}  // namespace wand::sched
