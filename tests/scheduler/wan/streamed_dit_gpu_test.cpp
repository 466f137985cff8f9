// StreamedDit on CUDA (labels scheduler, gpu): a tiny t2v A14B-layout model through
// WanGenerator with cfg_forward = StreamedDit, blocks streamed through a CudaTier of 3
// block slots (less than the model's 4 blocks) from pinned host memory, gives the latents of the resident WanGenerator on
// the same card bit for bit (same kernels, bf16), with and without the uncond stream
// spilled to host (Note [Branch spill]), and with a device budget (the allocator is
// capped). Skips without a CUDA LibTorch and a GPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "memory/memory_pool.h"
#include "model/generator.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/wan/streamed_dit.h"
#include "scheduler/exec/weight_store.h"
#include "tests/model/tiny_model.h"
#include "tests/scheduler/test_dir.h"
#ifdef WAND_HAVE_CUDA
#include "memory/cuda/pinned_host.h"
#endif

namespace wand::sched {
namespace {

namespace fs = std::filesystem;
using namespace exec;  // the streamer, stores and budgets under the streamed DiT

TEST(StreamedDitGpu, GeneratorLatentsEqualResidentOnTheCard) {
#ifndef WAND_EXEC_TORCH_CUDA
  GTEST_SKIP() << "LibTorch without CUDA";
#else
  if (!torch_cuda_available()) GTEST_SKIP() << "no GPU";
  test::TempDir tmp;
  const fs::path dir = tmp.path() / "tiny-t2v";
  model::testing::write_tiny_wan_dir(dir, "tiny-t2v", 5);
  model::GeneratorOptions go;
  go.device = at::Device(at::kCUDA, 0);
  go.run_dtype = model::RunDtype::kBFloat16;
  go.text_encoder = model::testing::fake_text_encoder(model::testing::kTinyTextDim);
  model::GenRequest req;
  req.task = "t2v";
  req.prompt = "a paper boat on a river";
  req.width = 48;
  req.height = 32;
  req.frames = 5;
  req.steps = 6;
  req.seed = 42;

  model::WanGenerator resident(dir, go);
  model::GenState ref = resident.prepare(req);
  std::vector<at::Tensor> want;
  while (ref.completed_steps() < ref.total_steps()) {
    resident.step(ref);
    want.push_back(ref.latent.cpu());
  }

  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant == 0 ? "plain" : variant == 1 ? "spill" : "budget");
    // bf16 blocks of the tiny model are 108-128 KiB: 3 slots of 128 KiB, less than 4 blocks.
    nlohmann::json pj = {{"host", {{"bytes", 32ull << 20}, {"pinned", true}}},
                         {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", 3 * (128ull << 10)},
                                                             {"backend", "cuda"}}})},
                         {"io", {{"engine", "psync"}}}};
    memory::MemoryPool pool(memory::PoolConfig::from_json(pj), memory::cuda::pool_deps());
    StreamedDitOptions o;
    o.ranks = {{pool.device_tier(0), 0, {}}};
    o.run = model::RunDtype::kBFloat16;
    o.pack_dir = (tmp.path() / "spool").string();
    o.name = "gpu" + std::to_string(variant);
    if (variant == 1) o.spill_uncond = 1;
    if (variant == 2) {
      o.ranks[0].budget.budget_bytes = 1ull << 30;  // context 0 here: slots + non-block + a large room
    }
    StreamedDit sd(pool, {dir / "high_noise_model", dir / "low_noise_model"}, o);
    ASSERT_LT(pool.tier(o.ranks[0].device_tier).bytes_capacity(), 4 * sd.max_block_bytes());
    model::GeneratorOptions so = go;
    so.cfg_forward = sd.cfg_forward();
    model::WanGenerator streamed(dir, so);
    model::GenState st = streamed.prepare(req);
    sd.begin_job(streamed.expert_of_step(st), {0, st.seq_len});
    for (std::size_t k = 0; st.completed_steps() < st.total_steps(); ++k) {
      streamed.step(st);
      ASSERT_TRUE(at::equal(st.latent.cpu(), want[k])) << "step " << k;
    }
    const nlohmann::json s = sd.stats_json();
    EXPECT_GT(s["job"]["device_bytes_in"].get<std::uint64_t>(), 0u);
    if (variant == 1) EXPECT_GT(s["job"]["spill_bytes"].get<std::uint64_t>(), 0u);
    if (variant == 2) EXPECT_GT(s["activation_room_bytes"].get<std::uint64_t>(), 0u);
    sd.end_job();
    synchronize_device(0);
  }
  cap_caching_allocator(0, device_mem_info(0).total_bytes);  // undo variant 2's cap
#endif
}

}  // namespace
}  // namespace wand::sched
