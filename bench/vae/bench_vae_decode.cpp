// bench_vae_decode: Wan2.1 VAE decode of 21 latents -> 1280x720x81 on one CUDA
// GPU, untiled (the official schedule) vs tiled inside a byte budget; prints a
// markdown table with wall time, the true device peak (cudaMemGetInfo before /
// after, nothing freed in between, so it includes the caching allocator's
// reserve, cuDNN workspaces and fragmentation) and the caching allocator's own
// peak, plus how far the tiled output is from the untiled one.
//
//   bench_vae_decode [--budget-gib 16] [--vae Wan2.1_VAE.pth] [--frames 21]
//                    [--height 720] [--width 1280] [--bf16] [--no-untiled]
//                    [--tile H W] [--overlap N]
//
// Random full-size weights (golden README init) unless --vae is given. cuDNN
// TF32 is allowed and cuBLAS TF32 forbidden: PyTorch's defaults, i.e. what the
// official code runs with.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <c10/core/GradMode.h>
#include <torch/cuda.h>

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
  double budget_gib = 16.0;
  std::string vae;
  int64_t frames = 21, height = 720, width = 1280;
  bool bf16 = false;
  bool untiled = true;
  int64_t tile_h = 0, tile_w = 0, overlap = -1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_vae_decode: %s needs a value\n", s.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--budget-gib") a.budget_gib = std::stod(next());
    else if (s == "--vae") a.vae = next();
    else if (s == "--frames") a.frames = std::stoll(next());
    else if (s == "--height") a.height = std::stoll(next());
    else if (s == "--width") a.width = std::stoll(next());
    else if (s == "--bf16") a.bf16 = true;
    else if (s == "--no-untiled") a.untiled = false;
    else if (s == "--tile") { a.tile_h = std::stoll(next()); a.tile_w = std::stoll(next()); }
    else if (s == "--overlap") a.overlap = std::stoll(next());
    else {
      std::fprintf(stderr, "usage: bench_vae_decode [--budget-gib G] [--vae PTH] [--frames T] [--height H] "
                           "[--width W] [--bf16] [--no-untiled] [--tile H W] [--overlap N]\n");
      std::exit(2);
    }
  }
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
  int64_t true_peak = 0;    // free before - free after (above the state before the call)
  int64_t alloc_peak = 0;   // caching allocator peak allocated above the state before the call
  int64_t reserved_peak = 0;
  at::Tensor out;           // on the CPU
};

Run run_decode(const Vae& vae, const at::Tensor& z, const VaeDecodeOptions& o) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  torch::cuda::synchronize();
  alloc::emptyCache();
  alloc::resetPeakStats(0);
  const size_t agg = 0;  // StatType::AGGREGATE (the enum moved namespaces in LibTorch 2.x)
  const int64_t alloc_before = alloc::getDeviceStats(0).allocated_bytes[agg].current;
  const int64_t free_before = device_free();
  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor out = vae.decode(z, o);
  torch::cuda::synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  Run r;
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  r.true_peak = free_before - device_free();
  const auto st = alloc::getDeviceStats(0);
  r.alloc_peak = st.allocated_bytes[agg].peak - alloc_before;
  r.reserved_peak = st.reserved_bytes[agg].peak;
  r.out = out.cpu();
  return r;
}

double gib(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }
#endif

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  // Reserve growth without fragmentation (read when the CUDA allocator starts);
  // an explicit setting in the environment wins.
  setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True", 0);
  if (!torch::cuda::is_available()) {
    std::printf("bench_vae_decode: skip (no CUDA device or CPU-only LibTorch)\n");
    return 0;
  }
#ifndef WAND_BENCH_TORCH_CUDA
  std::printf("bench_vae_decode: skip (built without CUDA LibTorch / cudart)\n");
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
      vae.emplace(cfg, random_vae_weights(cfg, 2025, 0.65), vo);
      weights = "random (seed 2025)";
    }
    const int64_t s = vae->config().spatial_stride();
    at::manual_seed(1);
    at::Tensor z = at::randn({vae->config().z_dim, a.frames, a.height / s, a.width / s}).to(vo.device);
    // Warm-up (cuDNN/cuBLAS handles, algorithm selection) on a small latent;
    // the baseline below includes the weights, the latent and those handles.
    vae->decode(z.narrow(1, 0, 2).narrow(2, 0, 8).narrow(3, 0, 8));
    torch::cuda::synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    const int64_t with_weights = free0 - device_free();
    std::printf("# bench_vae_decode\n\n- vae: %s, weights %s, dtype %s, device memory in use before decoding (weights, latent, CUDA handles) %.2f GiB\n",
                vae->config().name().c_str(), weights.c_str(), a.bf16 ? "bf16" : "fp32 (cuDNN TF32 allowed)",
                gib(with_weights));
    std::printf("- PYTORCH_CUDA_ALLOC_CONF=%s\n", std::getenv("PYTORCH_CUDA_ALLOC_CONF"));
    std::printf("- latent [%lld, %lld, %lld, %lld] -> video %lldx%lld x %lld frames\n\n",
                static_cast<long long>(z.size(0)), static_cast<long long>(z.size(1)),
                static_cast<long long>(z.size(2)), static_cast<long long>(z.size(3)),
                static_cast<long long>(a.width), static_cast<long long>(a.height),
                static_cast<long long>(1 + 4 * (a.frames - 1)));
    std::printf("| mode | plan | time s | true peak GiB (incl. weights) | allocator peak GiB | reserved peak GiB |\n");
    std::printf("|---|---|---|---|---|---|\n");
    VaeDecodeOptions tiled;
    tiled.budget_bytes = static_cast<int64_t>(a.budget_gib * 1024 * 1024 * 1024);
    tiled.tile_h = a.tile_h;
    tiled.tile_w = a.tile_w;
    tiled.overlap = a.overlap;
    std::optional<Run> un;
    if (a.untiled) {
      un = run_decode(*vae, z, VaeDecodeOptions{});
      std::printf("| untiled | official schedule | %.2f | %.2f | %.2f | %.2f |\n", un->seconds,
                  gib(un->true_peak + with_weights), gib(un->alloc_peak), gib(un->reserved_peak));
    }
    const VaeDecodePlan plan = vae->plan_decode({z.size(1), z.size(2), z.size(3)}, tiled);
    Run t = run_decode(*vae, z, tiled);
    std::printf("| budget %.1f GiB | %s | %.2f | %.2f | %.2f | %.2f |\n", a.budget_gib, plan.describe().c_str(),
                t.seconds, gib(t.true_peak + with_weights), gib(t.alloc_peak), gib(t.reserved_peak));
    if (un) {
      at::Tensor d = (t.out - un->out).abs();
      const double rel = ((t.out - un->out).norm() / un->out.norm()).item<double>();
      std::printf("\n- tiled vs untiled (clamped video): max abs %.4f, rel L2 %.4f, mean abs %.5f\n",
                  d.max().item<double>(), rel, d.mean().item<double>());
    }
    const bool inside = t.true_peak + with_weights <= tiled.budget_bytes;
    std::printf("- budgeted decode true peak %s the budget\n", inside ? "inside" : "OVER");
    return inside ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_vae_decode: %s\n", e.what());
    return 1;
  }
#endif
}
