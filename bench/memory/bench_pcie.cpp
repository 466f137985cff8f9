// bench_pcie: host -> device and device -> host GB/s, pinned (cudaHostAlloc) vs pageable
// (malloc) host memory, several sizes, with cudaMemcpyAsync on a non-blocking stream;
// plus the CudaTier's own copy_in / copy_out path from pinned memory. GPU only: without
// a usable GPU (or a build without CUDA) it says so and exits 0.
//
//   bench_pcie [--device 0] [--reps 10]
#include <cstdio>
#include <string>

#include "bench/memory/bench_util.h"
#include "common/log.h"

#ifdef WAND_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "memory/cuda/cuda_check.h"
#include "memory/cuda/cuda_tier.h"
#include "memory/cuda/pinned_host.h"
#endif

int main(int argc, char** argv) {
  wand::log::set_level("error");
#ifndef WAND_HAVE_CUDA
  (void)argc;
  (void)argv;
  std::printf("bench_pcie: built without CUDA; nothing to measure (exit 0)\n");
  return 0;
#else
  using namespace wand;
  using namespace wand::memory;
  if (cuda::device_count() == 0) {
    std::printf("bench_pcie: no CUDA device usable here; nothing to measure (exit 0)\n");
    return 0;
  }
  try {
    const int dev = std::stoi(bench::arg(argc, argv, "device", "0"));
    const int reps = std::stoi(bench::arg(argc, argv, "reps", "10"));
    cudaDeviceProp prop{};
    WAND_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    WAND_CUDA_CHECK(cudaSetDevice(dev));
    std::printf("bench_pcie device=%d name=%s reps=%d (GB/s = 1e9 bytes/s, best of reps)\n\n", dev, prop.name, reps);
    const std::uint64_t sizes[] = {1ull << 20, 16ull << 20, 64ull << 20, 256ull << 20, 670ull << 20};
    const std::uint64_t max = 670ull << 20;
    void* d = nullptr;
    WAND_CUDA_CHECK(cudaMalloc(&d, max));
    void* pinned = nullptr;
    WAND_CUDA_CHECK(cudaHostAlloc(&pinned, max, cudaHostAllocPortable));
    std::vector<char> pageable(max, 1);
    std::memset(pinned, 1, max);
    cudaStream_t s;
    WAND_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    WAND_CUDA_CHECK(cudaEventCreate(&e0));
    WAND_CUDA_CHECK(cudaEventCreate(&e1));
    auto measure = [&](void* host, std::uint64_t n, bool h2d) {
      float best_ms = 1e30f;
      for (int r = 0; r < reps + 1; ++r) {  // first rep warms up
        WAND_CUDA_CHECK(cudaEventRecord(e0, s));
        if (h2d) WAND_CUDA_CHECK(cudaMemcpyAsync(d, host, n, cudaMemcpyHostToDevice, s));
        else WAND_CUDA_CHECK(cudaMemcpyAsync(host, d, n, cudaMemcpyDeviceToHost, s));
        WAND_CUDA_CHECK(cudaEventRecord(e1, s));
        WAND_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        WAND_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0) best_ms = std::min(best_ms, ms);
      }
      return n / (best_ms * 1e-3) / 1e9;
    };
    std::printf("| size | H2D pinned | H2D pageable | D2H pinned | D2H pageable | CudaTier copy_in (pinned) | CudaTier copy_out (pinned) |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
    cuda::CudaTier tier(dev, max);
    Extent ext = tier.allocate(max);
    for (std::uint64_t n : sizes) {
      const double hp = measure(pinned, n, true);
      const double hg = measure(pageable.data(), n, true);
      const double dp = measure(pinned, n, false);
      const double dg = measure(pageable.data(), n, false);
      double tin = 0, tout = 0;
      for (int r = 0; r < reps + 1; ++r) {
        double t0 = bench::now_s();
        tier.copy_in(pinned, ext.offset, n).wait();
        double t1 = bench::now_s();
        tier.copy_out(ext.offset, pinned, n).wait();
        double t2 = bench::now_s();
        if (r > 0) {
          tin = std::max(tin, n / (t1 - t0) / 1e9);
          tout = std::max(tout, n / (t2 - t1) / 1e9);
        }
      }
      std::printf("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", format_bytes(n).c_str(), hp, hg, dp, dg, tin,
                  tout);
      std::fflush(stdout);
    }
    tier.free(ext);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(s);
    cudaFreeHost(pinned);
    cudaFree(d);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pcie: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
