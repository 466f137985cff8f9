// The visible CUDA devices for Note [Auto memory] (auto_memory.h). CUDA-only: compiled into
// wand_daemon only when WAND_HAVE_CUDA (daemon/CMakeLists.txt), as memory/cuda is.
#include <cuda_runtime.h>

#include "daemon/auto_memory.h"

namespace wand::daemon {

std::vector<GpuInfo> cuda_visible_gpus() {
  std::vector<GpuInfo> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: a machine without GPUs
    return out;
  }
  int previous = 0;
  const bool restore = cudaGetDevice(&previous) == cudaSuccess;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    GpuInfo g;
    g.index = i;
    g.name = p.name;
    g.total_bytes = p.totalGlobalMem;
    std::size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      g.free_bytes = free_b;
      if (total_b > 0) g.total_bytes = total_b;
    } else {
      (void)cudaGetLastError();
    }
    out.push_back(g);
  }
  if (restore) (void)cudaSetDevice(previous);
  return out;
}

}  // namespace wand::daemon
