// umT5 in bf16 on CUDA against the float64 golden reference: relative L2 of
// the encoder output and of both trimmed contexts <= 1e-2 (labels model, gpu;
// skips without a GPU).
#include <gtest/gtest.h>

#include "common/torch_compat.h"
#include "model/golden/golden.h"
#include "model/safetensors.h"
#include "model/t5_encoder.h"
#include "tests/golden_dir.h"

using namespace wand::model;

namespace {
double rel_l2(const at::Tensor& got, const at::Tensor& ref) {
  at::Tensor g = got.to(at::kCPU, at::kDouble), r = ref.to(at::kDouble);
  return (g - r).norm().item<double>() / r.norm().item<double>();
}
}  // namespace

TEST(T5GoldenGpu, Bfloat16OnCudaWithinOnePercent) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = wand::test::golden_root().string() + "/t5";
  const at::Device device(at::kCUDA, 0);
  golden::Case c = golden::load_case(dir);
  auto ref = load_safetensors(dir + "/outputs.safetensors");
  T5Encoder enc = T5Encoder::load(dir + "/models_t5_umt5-xxl-enc-bf16.pth", RunDtype::kBFloat16, device);
  const at::Tensor ids = c.inputs.at("ids").to(device), mask = c.inputs.at("mask").to(device);
  at::Tensor out = enc.forward(ids, mask);
  ASSERT_EQ(out.scalar_type(), at::kBFloat16);
  ASSERT_TRUE(out.is_cuda());
  const auto ctx = enc.encode(ids, mask);
  ASSERT_EQ(ctx.size(), 2u);
  const double e_out = rel_l2(out, ref.at("encoder_out"));
  const double e0 = rel_l2(ctx[0], ref.at("context_0"));
  const double e1 = rel_l2(ctx[1], ref.at("context_1"));
  std::printf("umt5 bf16 cuda rel_l2 encoder_out=%.3e context_0=%.3e context_1=%.3e\n", e_out, e0, e1);
  EXPECT_LE(e_out, 1e-2);
  EXPECT_LE(e0, 1e-2);
  EXPECT_LE(e1, 1e-2);
  // The same bf16 numerics on CPU and CUDA agree closely (same op chain).
  T5Encoder cpu = T5Encoder::load(dir + "/models_t5_umt5-xxl-enc-bf16.pth", RunDtype::kBFloat16, at::kCPU);
  EXPECT_LE(rel_l2(out, cpu.forward(c.inputs.at("ids"), c.inputs.at("mask")).to(at::kDouble)), 1e-2);
}
