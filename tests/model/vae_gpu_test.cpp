// GPU parity of both VAEs against the float64 golden references: fp32 with
// cuDNN TF32 allowed (the official setting) and the mixed-precision bf16 mode
// (docs/vae-precision.md), both within 1e-2 relative L2. Skips without CUDA.
#include <gtest/gtest.h>

#include <filesystem>

#include <torch/cuda.h>

#include "model/golden/golden.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/vae.h"
#include "tests/golden_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace wand::model;

double rel_l2(const at::Tensor& a, const at::Tensor& r) {
  at::Tensor x = a.to(at::kCPU, at::kDouble), y = r.to(at::kDouble);
  return ((x - y).norm() / y.norm()).item<double>();
}

// Issue 4's acceptance: both modes within 1e-2 (the bf16 mode measured at most
// 5.5e-3 on the CPU, docs/vae-precision.md).
void parity(const std::string& name, at::ScalarType dtype) {
  const double limit = 1e-2;
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const fs::path dir = wand::test::golden_root() / name;
  WAND_REQUIRE_DATA(dir / "case.json");
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
  EXPECT_LT(e, limit);
  EXPECT_LT(d, limit);
}

TEST(VaeGpu, Vae21Fp32Tf32) { parity("vae21", at::kFloat); }
TEST(VaeGpu, Vae22Fp32Tf32) { parity("vae22", at::kFloat); }
TEST(VaeGpu, Vae21Bf16) { parity("vae21", at::kBFloat16); }
TEST(VaeGpu, Vae22Bf16) { parity("vae22", at::kBFloat16); }

}  // namespace

#ifdef WAND_TEST_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>

namespace {

// Allocator peak (bytes above the state at the start) of fn on CUDA device 0.
template <class F>
int64_t cuda_peak(F&& fn) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  torch::cuda::synchronize();
  alloc::emptyCache();
  alloc::resetPeakStats(0);
  const int64_t before = alloc::getDeviceStats(0).allocated_bytes[0].current;  // [0]: AGGREGATE
  fn();
  torch::cuda::synchronize();
  return alloc::getDeviceStats(0).allocated_bytes[0].peak - before;
}

TEST(VaeGpu, BudgetedDecodeStaysUnderTheBudget) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  set_vae_cuda_tf32(true, false);
  const VaeConfig cfg = VaeConfig::wan21(32);
  VaeOptions o;
  o.device = at::Device(at::kCUDA, 0);
  Vae vae(cfg, random_vae_weights(cfg, 9, 0.65), o);
  at::manual_seed(2);
  const at::Tensor z = at::randn({16, 3, 48, 64}).to(o.device);
  vae.decode(z.narrow(2, 0, 8).narrow(3, 0, 8));  // warm-up (cuDNN algorithm choice)
  at::Tensor out;
  const int64_t untiled = cuda_peak([&] { out = vae.decode(z); });
  out = at::Tensor();
  const VaeDecodePlan up = vae.plan_decode({3, 48, 64});
  std::printf("cuda untiled allocator peak=%lld est=%lld\n", static_cast<long long>(untiled),
              static_cast<long long>(up.est_untiled_bytes));
  EXPECT_GE(up.est_untiled_bytes, untiled) << "the CUDA model undercounts";
  VaeDecodeOptions b;
  b.overlap = 4;
  b.budget_bytes = untiled / 2 + vae.weight_bytes();
  const VaeDecodePlan p = vae.plan_decode({3, 48, 64}, b);
  ASSERT_TRUE(p.fits) << p.describe();
  EXPECT_TRUE(p.tiled) << p.describe();
  const int64_t tiled = cuda_peak([&] { out = vae.decode(z, b); });
  std::printf("cuda budget=%lld: %s allocator peak=%lld\n", static_cast<long long>(b.budget_bytes),
              p.describe().c_str(), static_cast<long long>(tiled));
  EXPECT_LE(tiled, b.budget_bytes - vae.weight_bytes());
}

// The release geometry on the card (issue 13): the i2v conditioning encode of
// [image, 80 zero frames] at 1280x720 and the decode of 21 latents, each under
// a budget that forces the budgeted schedule, fp32 and the bf16 mode, random
// full-size 2.1 weights. The allocator peak must stay inside both the plan's
// prediction and the budget (less the resident weights); prints the numbers
// for docs/vae-tiling.md. About a minute on an H100.
TEST(VaeGpu, BudgetedEncodeAndDecodeAt720p) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  set_vae_cuda_tf32(true, false);
  const VaeConfig cfg = VaeConfig::wan21();
  const auto weights = random_vae_weights(cfg, 2025);
  at::manual_seed(4);
  at::Tensor video = at::zeros({3, 81, 720, 1280});
  video.narrow(1, 0, 1).copy_(at::rand({3, 1, 720, 1280}) * 2 - 1);
  const VaeVideoShape vs{81, 720, 1280};
  const at::Tensor z = at::randn({16, 21, 90, 160});
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    VaeOptions o;
    o.device = at::Device(at::kCUDA, 0);
    o.dtype = dt;
    Vae vae(cfg, weights, o);
    vae.encode(video.narrow(1, 0, 5).narrow(2, 0, 64).narrow(3, 0, 64).contiguous());  // warm-up
    const int64_t w = vae.weight_bytes();
    // Encode: chunked (no budget), then a budget just above the frame-streamed
    // prediction, then 60 % of that (tiles).
    at::Tensor ref, out;
    const int64_t chunked = cuda_peak([&] { ref = vae.encode(video); });
    const VaeEncodePlan cp = vae.plan_encode(vs);
    std::printf("%s encode chunked: allocator peak=%.2f GiB est=%.2f GiB\n", c10::toString(dt),
                chunked / 1073741824.0, (cp.est_total_bytes - w) / 1073741824.0);
    EXPECT_GE(cp.est_total_bytes - w, chunked) << "the CUDA encode model undercounts (chunked)";
    for (double frac : {1.0, 0.6}) {
      VaeEncodeOptions b;
      b.budget_bytes = static_cast<int64_t>(frac * static_cast<double>(cp.est_streamed_bytes + w) / 0.9) + (1 << 20);
      const VaeEncodePlan p = vae.plan_encode(vs, b);
      ASSERT_TRUE(p.fits) << p.describe();
      EXPECT_TRUE(p.streamed) << p.describe();
      const int64_t peak = cuda_peak([&] { out = vae.encode(video, b); });
      const double rel = ((out - ref).norm() / ref.norm()).item<double>();
      std::printf("%s encode budget=%.2f GiB: %s allocator peak=%.2f GiB rel_l2 vs chunked=%.3g\n",
                  c10::toString(dt), b.budget_bytes / 1073741824.0, p.describe().c_str(), peak / 1073741824.0, rel);
      EXPECT_GE(p.est_total_bytes - w, peak) << "the CUDA encode model undercounts";
      EXPECT_LE(peak, b.budget_bytes - w);
      if (!p.tiled) EXPECT_LT(rel, 1e-3) << "frame-streamed must match the chunked encode";
      out = at::Tensor();
    }
    ref = at::Tensor();
    // Decode under 12 GiB.
    VaeDecodeOptions d;
    d.budget_bytes = 12ll << 30;
    const at::Tensor zd = z.to(o.device);
    const VaeDecodePlan dp = vae.plan_decode({21, 90, 160}, d);
    ASSERT_TRUE(dp.fits) << dp.describe();
    const int64_t dpeak = cuda_peak([&] { out = vae.decode(zd, d); });
    std::printf("%s decode budget=12 GiB: %s allocator peak=%.2f GiB\n", c10::toString(dt), dp.describe().c_str(),
                dpeak / 1073741824.0);
    EXPECT_GE(dp.est_total_bytes - w, dpeak) << "the CUDA decode model undercounts";
    EXPECT_LE(dpeak, d.budget_bytes - w);
  }
}

}  // namespace
#endif
