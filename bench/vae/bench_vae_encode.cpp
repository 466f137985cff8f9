// bench_vae_encode: the i2v conditioning encode of the A14B pipeline, Wan2.1
// VAE over [image, 80 zero frames] at 1280x720, on one CUDA GPU: the official
// chunked schedule (no budget) vs the encode inside byte budgets (chunked,
// frame-streamed or tiled: Vae::plan_encode). Prints a markdown table with
// wall time, the true device peak (cudaMemGetInfo before / after, nothing
// freed in between, so it includes the allocator's reserve and cuDNN
// workspaces), the allocator's own peak and the plan's prediction, plus how
// far each budgeted latent is from the chunked one.
//
//   bench_vae_encode [--budget-gib G]... [--vae Wan2.1_VAE.pth] [--frames 81]
//                    [--height 720] [--width 1280] [--bf16] [--random-video]
//
// The video stays on the host (the encode moves it chunk by chunk). Random
// full-size weights (golden README init) unless --vae is given. cuDNN TF32
// allowed, cuBLAS TF32 forbidden (PyTorch's defaults). Default budgets: 12, 8, 5 GiB.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/GradMode.h>
#include <torch/cuda.h>

#include "bench/bench_util.h"
#include "common/error.h"
#include "model/pth.h"
#include "model/vae.h"

#ifdef WAND_BENCH_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime.h>
#endif

namespace {

using namespace wand::model;

struct Args {
  std::vector<double> budgets_gib;
  std::string vae;
  int64_t frames = 81, height = 720, width = 1280;
  bool bf16 = false;
  bool random_video = false;  // all frames random instead of [image, zeros]
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_vae_encode: %s needs a value\n", s.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--budget-gib") a.budgets_gib.push_back(std::stod(next()));
    else if (s == "--vae") a.vae = next();
    else if (s == "--frames") a.frames = std::stoll(next());
    else if (s == "--height") a.height = std::stoll(next());
    else if (s == "--width") a.width = std::stoll(next());
    else if (s == "--bf16") a.bf16 = true;
    else if (s == "--random-video") a.random_video = true;
    else {
      std::fprintf(stderr, "usage: bench_vae_encode [--budget-gib G]... [--vae PTH] [--frames T] [--height H] "
                           "[--width W] [--bf16] [--random-video]\n");
      std::exit(2);
    }
  }
  if (a.budgets_gib.empty()) a.budgets_gib = {12, 8, 5};
  return a;
}

#ifdef WAND_BENCH_TORCH_CUDA
int64_t device_free() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return -1;
  return static_cast<int64_t>(free_b);
}

struct Run {
  double seconds = 0;
  int64_t true_peak = 0;   // free before - free after (above the state before the call)
  int64_t alloc_peak = 0;  // caching allocator peak allocated above the state before the call
  at::Tensor out;          // on the CPU
};

Run run_encode(const Vae& vae, const at::Tensor& video, const VaeEncodeOptions& o) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  torch::cuda::synchronize();
  alloc::emptyCache();
  alloc::resetPeakStats(0);
  const size_t agg = 0;  // StatType::AGGREGATE
  const int64_t alloc_before = alloc::getDeviceStats(0).allocated_bytes[agg].current;
  const int64_t free_before = device_free();
  const auto t0 = wand::bench::Clock::now();
  at::Tensor out = vae.encode(video, o);
  torch::cuda::synchronize();
  Run r;
  r.seconds = wand::bench::since(t0);
  r.true_peak = free_before - device_free();
  r.alloc_peak = alloc::getDeviceStats(0).allocated_bytes[agg].peak - alloc_before;
  r.out = out.cpu();
  return r;
}

double gib(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }
#endif

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True", 0);
  if (!torch::cuda::is_available()) {
    std::printf("bench_vae_encode: skip (no CUDA device or CPU-only LibTorch)\n");
    return 0;
  }
#ifndef WAND_BENCH_TORCH_CUDA
  std::printf("bench_vae_encode: skip (built without CUDA LibTorch / cudart)\n");
  return 0;
#else
  try {
    c10::NoGradGuard no_grad;
    set_vae_cuda_tf32(/*cudnn=*/true, /*matmul=*/false);
    torch::cuda::synchronize();
    const int64_t free0 = device_free();
    VaeOptions vo;
    vo.device = at::Device(at::kCUDA, 0);
    vo.dtype = a.bf16 ? at::kBFloat16 : at::kFloat;
    std::optional<Vae> vae;
    std::string weights = a.vae;
    if (!a.vae.empty()) {
      PthFile src(a.vae);
      vae.emplace(src, vo);
    } else {
      const VaeConfig cfg = VaeConfig::wan21();
      vae.emplace(cfg, random_vae_weights(cfg, 2025), vo);
      weights = "random (seed 2025)";
    }
    at::manual_seed(1);
    at::Tensor video = a.random_video ? at::rand({3, a.frames, a.height, a.width}) * 2 - 1
                                      : at::zeros({3, a.frames, a.height, a.width});
    if (!a.random_video) video.narrow(1, 0, 1).copy_(at::rand({3, 1, a.height, a.width}) * 2 - 1);
    // Warm-up (cuDNN handles, algorithm choice) on a small video.
    const int64_t s = vae->config().spatial_stride();
    vae->encode(video.narrow(1, 0, 5).narrow(2, 0, 8 * s).narrow(3, 0, 8 * s).contiguous());
    torch::cuda::synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    const int64_t with_weights = free0 - device_free();
    std::printf("# bench_vae_encode\n\n- vae: %s, weights %s, dtype %s; device memory in use before encoding "
                "(weights, CUDA handles) %.2f GiB\n",
                vae->config().name().c_str(), weights.c_str(), a.bf16 ? "bf16 mode" : "fp32 (cuDNN TF32 allowed)",
                gib(with_weights));
    std::printf("- PYTORCH_CUDA_ALLOC_CONF=%s\n", std::getenv("PYTORCH_CUDA_ALLOC_CONF"));
    std::printf("- video %s [3, %lld, %lld, %lld] on the host\n\n", a.random_video ? "random" : "[image, zeros]",
                static_cast<long long>(a.frames), static_cast<long long>(a.height),
                static_cast<long long>(a.width));
    std::printf("| budget | plan | time s | true peak GiB (incl. weights) | allocator peak GiB | predicted "
                "(est_total) GiB | rel L2 vs chunked |\n|---|---|---|---|---|---|---|\n");
    const VaeVideoShape shape{a.frames, a.height, a.width};
    const Run ref = run_encode(*vae, video, VaeEncodeOptions{});
    const VaeEncodePlan rp = vae->plan_encode(shape, {});
    std::printf("| none | %s | %.2f | %.2f | %.2f | %.2f | 0 |\n", rp.describe().c_str(), ref.seconds,
                gib(ref.true_peak + with_weights), gib(ref.alloc_peak), gib(rp.est_total_bytes));
    bool all_inside = true;
    for (double g : a.budgets_gib) {
      VaeEncodeOptions o;
      o.budget_bytes = static_cast<int64_t>(g * 1024 * 1024 * 1024);
      const VaeEncodePlan p = vae->plan_encode(shape, o);
      if (!p.fits) {
        std::printf("| %.1f GiB | %s | - | - | - | %.2f | - |\n", g, p.describe().c_str(), gib(p.est_total_bytes));
        continue;
      }
      const Run r = run_encode(*vae, video, o);
      const double rel = ((r.out - ref.out).norm() / ref.out.norm()).item<double>();
      std::printf("| %.1f GiB | %s | %.2f | %.2f | %.2f | %.2f | %.3g |\n", g, p.describe().c_str(), r.seconds,
                  gib(r.true_peak + with_weights), gib(r.alloc_peak), gib(p.est_total_bytes), rel);
      if (r.true_peak + with_weights > o.budget_bytes) all_inside = false;
    }
    std::printf("\n- every budgeted encode's true peak %s its budget\n", all_inside ? "inside" : "NOT inside");
    return all_inside ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_vae_encode: %s\n", e.what());
    return 1;
  }
#endif
}
