// Pinned host memory for the HostTier: one cudaHostAlloc(Portable) region, so that every
// GPU copies from it at full PCIe speed (one host copy feeds every device tier).
//
//   HostTier host(bytes, cuda::pinned_host_region);
//
// Without a usable GPU it falls back to map_locked_host_region (logged).
#pragma once

#include <cstdint>

#include "memory/host_tier.h"
#include "memory/memory_pool.h"

namespace wand::memory::cuda {

HostRegion pinned_host_region(std::uint64_t bytes);

// PoolDeps for a machine with CUDA: pinned_host_region for the host tier and CudaTier for
// devices whose backend is "cuda", or "auto" with the GPU present ("auto" without it
// falls back to the CPU device tier, logged; "cuda" without it throws wand::Error(kConfig)).
PoolDeps pool_deps();

}  // namespace wand::memory::cuda
