// The pipelines on CUDA (labels model + gpu; skipped without a GPU): tiny
// t2v / ti2v generations in bf16 with the directory's own umT5, the CPU-noise
// contract (same noise as on the CPU), and a resume on the GPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/torch_compat.h"
#include "model/generator.h"
#include "tests/model/tiny_model.h"

namespace wand::model {
namespace {

namespace fs = std::filesystem;

bool have_gpu() { return at::hasCUDA() && torch::cuda::is_available(); }

GenRequest request(const std::string& task, std::uint64_t seed) {
  GenRequest r;
  r.task = task;
  r.prompt = "a paper boat on a river";
  r.width = 64;
  r.height = task == "t2v" ? 48 : 64;
  r.frames = 5;
  r.steps = 4;
  r.seed = seed;
  return r;
}

at::Tensor run_all(WanGenerator& gen, GenState& st) {
  while (st.completed_steps() < st.total_steps()) gen.step(st);
  return gen.decode(st);
}

TEST(GeneratorGpu, T2vBf16NoiseContractAndResume) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const fs::path root = testing::make_temp_dir("pipeline-gpu");
  testing::write_tiny_wan_dir(root / "t2v", "tiny-t2v", 5);
  {
    WanGenerator gen(root / "t2v");  // defaults: CUDA, bf16, umT5 of the dir
    ASSERT_TRUE(gen.device().is_cuda());
    EXPECT_EQ(gen.run_dtype(), RunDtype::kBFloat16);
    GenState st = gen.prepare(request("t2v", 3));
    ASSERT_TRUE(st.latent.is_cuda());
    // Note [CPU noise]: the same noise as a CPU generator seeded the same way.
    GeneratorOptions cpu;
    cpu.device = at::Device(at::kCPU);
    WanGenerator gen_cpu(root / "t2v", cpu);
    GenState st_cpu = gen_cpu.prepare(request("t2v", 3));
    EXPECT_TRUE(at::equal(st.latent.cpu(), st_cpu.latent));
    gen.step(st);
    gen.step(st);
    auto blobs = gen.save_state(st);
    at::Tensor video = run_all(gen, st);
    ASSERT_EQ(video.sizes(), (std::vector<int64_t>{3, 5, 48, 64}));
    EXPECT_TRUE(at::isfinite(video).all().item<bool>());
    EXPECT_NE(st.experts_run.find('l'), std::string::npos);
    at::Tensor ref = st.latent.cpu();

    WanGenerator gen2(root / "t2v");
    GenState st2 = gen2.prepare(request("t2v", 3));
    gen2.load_state(st2, blobs);
    run_all(gen2, st2);
    EXPECT_TRUE(at::equal(st2.latent.cpu(), ref)) << "max diff " << (st2.latent.cpu() - ref).abs().max().item<float>();
  }
  std::error_code ec;
  fs::remove_all(root, ec);
}

TEST(GeneratorGpu, Ti2vWithImageBf16) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const fs::path root = testing::make_temp_dir("pipeline-gpu");
  testing::write_tiny_wan_dir(root / "ti2v", "tiny-ti2v", 6);
  {
    WanGenerator gen(root / "ti2v");
    GenRequest r = request("ti2v", 4);
    r.image_rgb = (at::arange(50 * 70 * 3, at::kInt) % 251).to(at::kByte).view({50, 70, 3});
    GenState st = gen.prepare(r);
    at::Tensor video = run_all(gen, st);
    ASSERT_EQ(video.sizes(), (std::vector<int64_t>{3, 5, 64, 64}));
    EXPECT_TRUE(at::isfinite(video).all().item<bool>());
    EXPECT_TRUE(at::equal(st.latent.narrow(1, 0, 1), st.z));
  }
  std::error_code ec;
  fs::remove_all(root, ec);
}

}  // namespace
}  // namespace wand::model
