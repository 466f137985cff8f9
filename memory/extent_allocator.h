// ExtentAllocator: best-fit sub-allocation of [0, capacity) with coalescing of free
// neighbours. Holds offsets only; the region itself belongs to the tier.
//
//   ExtentAllocator a(1 << 30, 4096);
//   std::optional<Extent> e = a.allocate(1000);   // {offset, 4096}: sizes round up to alignment
//   a.free(*e);
//   a.bytes_largest_free();
//
// Not thread-safe: the owning Tier guards it with its mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace wand::memory {

struct Extent {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;  // the rounded-up size actually reserved
};

class ExtentAllocator {
 public:
  // capacity is rounded down to alignment (a power of two).
  ExtentAllocator(std::uint64_t capacity, std::uint64_t alignment);

  // Best fit (smallest free extent that holds the rounded size; lowest offset on ties).
  // nullopt when no free extent is large enough. bytes == 0 is treated as one unit.
  std::optional<Extent> allocate(std::uint64_t bytes);
  // Returns an extent from allocate(); throws wand::Error(kInternal) on a double free.
  void free(const Extent& extent);

  std::uint64_t round_up(std::uint64_t bytes) const;
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t bytes_capacity() const { return capacity_; }
  std::uint64_t bytes_used() const { return used_; }
  std::uint64_t bytes_free() const { return capacity_ - used_; }
  std::uint64_t bytes_largest_free() const;
  std::size_t free_extent_count() const { return free_.size(); }
  std::size_t allocation_count() const { return allocated_.size(); }

 private:
  std::uint64_t capacity_;
  std::uint64_t alignment_;
  std::uint64_t used_ = 0;
  std::map<std::uint64_t, std::uint64_t> free_;       // offset -> bytes, never adjacent
  std::map<std::uint64_t, std::uint64_t> allocated_;  // offset -> bytes
};

}  // namespace wand::memory
