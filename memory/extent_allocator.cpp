#include "memory/extent_allocator.h"

#include <string>

#include "common/error.h"

namespace wand::memory {

ExtentAllocator::ExtentAllocator(std::uint64_t capacity, std::uint64_t alignment)
    : alignment_(alignment) {
  WAND_ASSERT(alignment > 0 && (alignment & (alignment - 1)) == 0,
              "alignment must be a power of two, got " + std::to_string(alignment));
  capacity_ = capacity & ~(alignment - 1);
  if (capacity_ > 0) free_.emplace(0, capacity_);
}

std::uint64_t ExtentAllocator::round_up(std::uint64_t bytes) const {
  if (bytes == 0) bytes = 1;
  return (bytes + alignment_ - 1) & ~(alignment_ - 1);
}

std::optional<Extent> ExtentAllocator::allocate(std::uint64_t bytes) {
  if (bytes > capacity_) return std::nullopt;
  const std::uint64_t need = round_up(bytes);
  auto best = free_.end();
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second >= need && (best == free_.end() || it->second < best->second)) {
      best = it;
      if (it->second == need) break;
    }
  }
  if (best == free_.end()) return std::nullopt;
  Extent e{best->first, need};
  const std::uint64_t rest = best->second - need;
  const std::uint64_t rest_offset = best->first + need;
  free_.erase(best);
  if (rest > 0) free_.emplace(rest_offset, rest);
  allocated_.emplace(e.offset, e.bytes);
  used_ += e.bytes;
  return e;
}

void ExtentAllocator::free(const Extent& extent) {
  auto a = allocated_.find(extent.offset);
  WAND_ASSERT(a != allocated_.end() && a->second == extent.bytes,
              "free of an extent that is not allocated: offset=" + std::to_string(extent.offset) +
                  " bytes=" + std::to_string(extent.bytes));
  allocated_.erase(a);
  used_ -= extent.bytes;
  std::uint64_t off = extent.offset;
  std::uint64_t len = extent.bytes;
  auto next = free_.lower_bound(off);
  if (next != free_.end() && off + len == next->first) {  // merge with the right neighbour
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {  // merge with the left neighbour
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      prev->second += len;
      return;
    }
  }
  free_.emplace(off, len);
}

std::uint64_t ExtentAllocator::bytes_largest_free() const {
  std::uint64_t best = 0;
  for (const auto& [off, len] : free_) best = std::max(best, len);
  return best;
}

}  // namespace wand::memory
