#include "memory/cuda/pinned_host.h"

#include <cuda_runtime.h>

#include "common/error.h"
#include "common/log.h"
#include "memory/cuda/cuda_tier.h"

namespace wand::memory::cuda {

HostRegion pinned_host_region(std::uint64_t bytes) {
  if (bytes == 0 || device_count() == 0) return map_locked_host_region(bytes);
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw OutOfMemory("host", bytes, 0, 0, std::string("cudaHostAlloc failed: ") + cudaGetErrorString(err));
  }
  HostRegion r;
  r.data = static_cast<std::byte*>(p);
  r.bytes = bytes;
  r.page_locked = true;
  r.how = "cudaHostAlloc";
  r.release = [](std::byte* d, std::uint64_t) { cudaFreeHost(d); };
  return r;
}

PoolDeps pool_deps() {
  PoolDeps deps;
  deps.host_region = pinned_host_region;
  deps.device_tier = [](const DeviceConfig& dc) -> std::unique_ptr<DeviceTier> {
    if (dc.backend == "cpu") return nullptr;
    const int n = device_count();
    if (dc.index < n) return std::make_unique<CudaTier>(dc.index, dc.bytes);
    if (dc.backend == "cuda") {
      throw Error(ErrorCode::kConfig, "devices[index=" + std::to_string(dc.index) + "].backend: cuda requested but " +
                                          std::to_string(n) + " CUDA device(s) are usable here");
    }
    wand::log::get("mem")->warn("no cuda device index={} (found {}), using the cpu device tier", dc.index, n);
    return nullptr;
  };
  return deps;
}

}  // namespace wand::memory::cuda
