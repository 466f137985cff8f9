// Tier: one level of the memory pool (a GPU's memory, pinned host memory, or a disk
// spool) with a byte budget, a region reserved once, and an extent allocator over it.
//
//   HostTier host(24ull << 30);                 // reserves and pins 24 GiB once
//   Extent e = host.allocate(670 << 20);        // throws wand::OutOfMemory when it cannot fit
//   std::byte* p = host.base() + e.offset;
//   host.free(e);
//   TierStats s = host.stats();
//
// Owns: the region (through the subclass) and its allocator. Never exceeds its budget:
// every byte handed out comes from the allocator over [0, capacity).
// Threads: allocate/free/stats may be called from any thread (guarded by mu_); the
// transfer counters are atomics updated by engine threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "memory/extent_allocator.h"

namespace wand::memory {

enum class TierKind { kDevice, kHost, kDisk };
const char* tier_kind_name(TierKind kind);  // "device" | "host" | "disk"

// A snapshot of one tier's counters.
struct TierStats {
  std::string name;
  TierKind kind = TierKind::kHost;
  int device_index = -1;
  std::uint64_t bytes_capacity = 0;
  std::uint64_t bytes_used = 0;
  std::uint64_t bytes_pinned = 0;
  std::uint64_t bytes_largest_free = 0;
  std::uint64_t transfers_in_flight = 0;
  std::uint64_t bytes_moved_in = 0;   // total bytes written into this tier
  std::uint64_t bytes_moved_out = 0;  // total bytes read out of this tier
};

class Tier {
 public:
  Tier(std::string name, TierKind kind, int device_index, std::uint64_t capacity,
       std::uint64_t alignment);
  virtual ~Tier() = default;
  Tier(const Tier&) = delete;
  Tier& operator=(const Tier&) = delete;

  const std::string& name() const { return name_; }
  TierKind kind() const { return kind_; }
  int device_index() const { return device_index_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t bytes_capacity() const { return capacity_; }

  // Sub-allocates; throws wand::OutOfMemory(name, requested, free, largest free extent).
  Extent allocate(std::uint64_t bytes);
  std::optional<Extent> try_allocate(std::uint64_t bytes);
  void free(const Extent& extent);
  // Bytes an allocation of `bytes` takes: the alignment, then the size class.
  std::uint64_t round_up(std::uint64_t bytes) const;
  // Note [Size classes]: with a quantum q > 0, an allocation larger than q / 2 takes a
  // whole multiple of q. The executor sets q to its largest weight block, so every
  // block takes exactly one slot and a freed block's hole fits any other block: a
  // tier that streams blocks of slightly different sizes (release shards, O_DIRECT
  // head and tail) never fragments into holes no block fits. Smaller allocations
  // keep plain alignment. 0 (the default) turns size classes off. Extents made
  // before a change keep their sizes (and are freed with them).
  void set_quantum(std::uint64_t q);
  std::uint64_t quantum() const;

  // Start of the region: host pointer for HostTier / CpuDeviceTier, device pointer for
  // CudaTier, nullptr for the disk tier.
  virtual std::byte* base() const = 0;
  // True when base() is dereferenceable by the CPU.
  virtual bool host_addressable() const = 0;

  TierStats stats() const;

  // Accounting, called by whoever moves bytes (engines, the pool).
  void add_pinned(std::int64_t delta) { bytes_pinned_ += static_cast<std::uint64_t>(delta); }
  void transfer_started() { ++in_flight_; }
  void transfer_finished(std::uint64_t bytes_in, std::uint64_t bytes_out) {
    --in_flight_;
    bytes_in_ += bytes_in;
    bytes_out_ += bytes_out;
  }

 private:
  const std::string name_;
  const TierKind kind_;
  const int device_index_;
  const std::uint64_t alignment_;
  const std::uint64_t capacity_;
  mutable std::mutex mu_;
  ExtentAllocator alloc_;  // guarded by mu_
  std::uint64_t quantum_ = 0;  // guarded by mu_; see Note [Size classes]
  std::uint64_t sized_locked(std::uint64_t bytes) const;
  std::atomic<std::uint64_t> bytes_pinned_{0};
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<std::uint64_t> bytes_in_{0};
  std::atomic<std::uint64_t> bytes_out_{0};
};

}  // namespace wand::memory
