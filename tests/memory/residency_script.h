// A residency script: runs a schedule of blob uses on one device tier of a pool through
// the ResidencyManager and records every decision and byte moved, so that two pools (CPU
// device tier, CUDA tier) can be compared decision for decision.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "memory/memory_pool.h"

namespace wand::memory::testing {

struct ScriptResult {
  std::vector<std::string> decisions;    // "pos=3 evict=[..] prefetch=[..]"
  std::vector<std::uint64_t> checksums;  // FNV-1a of the bytes of each use, read back from the device
  std::uint64_t device_bytes_in = 0;
  std::uint64_t device_bytes_out = 0;
  std::uint64_t host_bytes_in = 0;
  std::uint64_t host_bytes_out = 0;
  std::uint64_t peak_device_used = 0;
};

// `order` indexes into `blobs`. Waits for each use's copy, pins it, copies it back to
// host memory through the tier (copy_out) and hashes it.
ScriptResult run_residency_script(MemoryPool& pool, int device_tier, const std::vector<BlobId>& blobs,
                                  const std::vector<std::size_t>& order, std::uint64_t window_bytes);

std::uint64_t fnv1a(const void* data, std::size_t n);

}  // namespace wand::memory::testing
