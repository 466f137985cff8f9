// Issue 8, part 3 (labels multigpu;gpu; built with WAND_HAVE_NCCL): the tiny 12-head DiT
// in bf16 with its blocks streamed from one pinned host copy to 2 GPUs (a CudaTier per
// card in one MemoryPool), Ulysses-2 and CFG-parallel over NcclCollective (one thread per
// GPU): the latents after 2 UniPC steps equal the single-GPU path (WanDit::forward_cfg with
// every weight on cuda:0) within bf16 tolerance (relative L2). Skips with fewer than 2 GPUs.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "memory/cuda/pinned_host.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/checkpoint.h"
#include "model/sampler.h"
#include "model/sampler_schedule.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/multigpu/parallel_runner.h"
#include "tests/scheduler/multigpu/tiny_parallel_model.h"

namespace {

using namespace wand;
using sched::ParallelKind;
using sched::ParallelStrategy;

constexpr double kRelL2Tol = 2e-2;  // bf16 GEMMs, different reduction orders
constexpr double kGuide = 5.0;
constexpr int kSteps = 2;

int visible_gpus() {
  int n = 0;
  if (!at::hasCUDA() || cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

double rel_l2(const at::Tensor& a, const at::Tensor& ref) {
  const at::Tensor r = ref.to(at::kDouble).cpu();
  return (a.to(at::kDouble).cpu() - r).norm().item<double>() / r.norm().item<double>();
}

template <class StepFn>
at::Tensor latents(StepFn step) {
  at::manual_seed(3);
  sched::exec::StepInputs in;
  in.x = at::randn({16, 5, 10, 2});  // 25 tokens: padded on 2 ranks
  in.context = at::randn({7, test::kTinyTextDim});
  in.context_null = at::randn({5, test::kTinyTextDim});
  in.seq_len = 25;
  model::FlowSampler s(model::SolverKind::kUniPC, kSteps, 5.0);
  int64_t k = 0;
  while (!s.done()) {
    in.t = at::full({1}, static_cast<double>(s.timestep()));
    auto [c, u] = step(k++, in);
    in.x = s.step(model::cfg_combine(u.cpu(), c.cpu(), kGuide), in.x);
  }
  return in.x;
}

// The tiny model on `gpus` cards of one pinned pool; the reference latents with every
// weight on cuda:0.
struct Rig {
  model::CheckpointDir ck{test::tiny_parallel_model_dir(5, at::kBFloat16)};
  const model::RunDtype run = model::RunDtype::kBFloat16;
  at::Tensor ref;
  std::vector<std::unique_ptr<model::WanDit>> nonblock;
  std::unique_ptr<memory::MemoryPool> pool;
  std::unique_ptr<sched::exec::WeightStore> store;

  explicit Rig(int gpus) {
    const at::Device cuda0(at::kCUDA, 0);
    {
      model::WanDit full = model::WanDit::load(ck, run, cuda0, true);
      ref = latents([&](int64_t, const sched::exec::StepInputs& i) {
        return full.forward_cfg(i.x.to(cuda0), i.t.to(cuda0), i.context.to(cuda0), i.context_null.to(cuda0),
                                i.seq_len);
      });
    }
    nlohmann::json devs = nlohmann::json::array();
    for (int g = 0; g < gpus; ++g) {
      nonblock.push_back(std::make_unique<model::WanDit>(
          model::WanDit::load(ck, run, at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g)), false)));
      devs.push_back({{"index", g}, {"bytes", 64ull << 20}, {"backend", "cuda"}});
    }
    nlohmann::json pj = {{"host", {{"bytes", 64ull << 20}, {"pinned", true}}},
                         {"devices", devs},
                         {"io", {{"engine", "psync"}}}};
    pool = std::make_unique<memory::MemoryPool>(memory::PoolConfig::from_json(pj), memory::cuda::pool_deps());
    sched::exec::WeightStoreOptions o;
    o.run = run;
    o.name = "dit";
    store = std::make_unique<sched::exec::WeightStore>(sched::exec::WeightStore::open(ck, *pool, o));
  }
  std::vector<sched::ParallelRank> ranks(int n) const {
    std::vector<sched::ParallelRank> r;
    for (int g = 0; g < n; ++g) r.push_back({pool->device_tier(g), g, {nonblock[static_cast<std::size_t>(g)].get()}});
    return r;
  }
  // Latents of `st` on the first st.ranks() cards, checked against the reference.
  void check(const ParallelStrategy& st, const sched::GroupFactory& groups) {
    sched::ParallelDitRunner r(*pool, {store.get()}, std::vector<int>(kSteps, 0), ranks(st.ranks()), st, groups);
    const at::Tensor out = latents([&](int64_t k, const sched::exec::StepInputs& i) { return r.step(k, i); });
    const double e = rel_l2(out, ref);
    EXPECT_LE(e, kRelL2Tol) << st.name();
    std::printf("%s: rel L2 vs single GPU %.3g; %s\n", st.name().c_str(), e, r.stats_json().dump().c_str());
    for (int q = 0; q < st.ranks(); ++q) {
      EXPECT_EQ(r.streamer(q).stats().blocks_run, 5u * kSteps) << st.name() << " rank " << q;
    }
    // One pinned host copy fed every card.
    std::uint64_t host_bytes = 0;
    for (const auto& b : store->blocks()) host_bytes += pool->copy_bytes(b.id, pool->host_tier());
    EXPECT_EQ(pool->tier(pool->host_tier()).stats().bytes_used, host_bytes) << st.name();
  }
};

TEST(NcclStreamed, SingleGpuStreamedAndUlyssesOnOneNcclRankMatchResidentWeights) {
  if (visible_gpus() < 1) GTEST_SKIP() << "no CUDA GPU";
  Rig rig(1);
  ASSERT_FALSE(at::isnan(rig.ref).any().item<bool>());
  rig.check({ParallelKind::kSingle, 1}, sched::fake_group_factory());
  rig.check({ParallelKind::kUlysses, 1}, sched::nccl_group_factory());  // NCCL with one rank
}

TEST(NcclStreamed, UlyssesAndCfgParallelOnTwoGpusMatchTheSingleGpuPath) {
  if (visible_gpus() < 2) GTEST_SKIP() << "needs 2 CUDA GPUs, found " << visible_gpus();
  Rig rig(2);
  rig.check({ParallelKind::kUlysses, 2}, sched::nccl_group_factory());
  rig.check({ParallelKind::kCfgParallel, 1}, sched::nccl_group_factory());
}

}  // namespace
