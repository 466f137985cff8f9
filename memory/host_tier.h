// HostTier: the host level of the pool: one region of page-locked host memory reserved
// at start-up, sub-allocated with 4 KiB alignment (disk transfers land in it with
// O_DIRECT, so every extent is block aligned).
//
//   HostTier host(8ull << 30);                                  // mmap + mlock (best effort)
//   HostTier pinned(8ull << 30, cuda::pinned_host_region);      // cudaHostAlloc (memory/cuda)
//
// Owns: the region (released through HostRegion::release in the destructor).
// Threads: as Tier.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "memory/tier.h"

namespace wand::memory {

// A reserved block of host memory and how to give it back.
struct HostRegion {
  std::byte* data = nullptr;
  std::uint64_t bytes = 0;
  bool page_locked = false;   // mlock or cudaHostAlloc succeeded
  const char* how = "";       // "mmap+mlock", "mmap", "cudaHostAlloc"
  std::function<void(std::byte*, std::uint64_t)> release;
};

using HostRegionFactory = std::function<HostRegion(std::uint64_t bytes)>;

// mmap(MAP_ANONYMOUS) then mlock; a failed mlock is logged (logger "mem"), not fatal.
// Throws wand::OutOfMemory("host", ...) when the mmap itself fails.
HostRegion map_locked_host_region(std::uint64_t bytes);

class HostTier : public Tier {
 public:
  static constexpr std::uint64_t kAlignment = 4096;

  explicit HostTier(std::uint64_t capacity, const HostRegionFactory& factory = {});
  ~HostTier() override;

  std::byte* base() const override { return region_.data; }
  bool host_addressable() const override { return true; }
  bool page_locked() const { return region_.page_locked; }
  const char* region_kind() const { return region_.how; }

 private:
  HostRegion region_;
};

}  // namespace wand::memory
