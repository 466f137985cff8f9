#include "memory/tier.h"

#include "common/error.h"

namespace wand::memory {

const char* tier_kind_name(TierKind kind) {
  switch (kind) {
    case TierKind::kDevice: return "device";
    case TierKind::kHost: return "host";
    case TierKind::kDisk: return "disk";
  }
  return "unknown";
}

Tier::Tier(std::string name, TierKind kind, int device_index, std::uint64_t capacity,
           std::uint64_t alignment)
    : name_(std::move(name)),
      kind_(kind),
      device_index_(device_index),
      alignment_(alignment),
      capacity_(capacity & ~(alignment - 1)),
      alloc_(capacity, alignment) {}

std::uint64_t Tier::sized_locked(std::uint64_t bytes) const {
  const std::uint64_t r = alloc_.round_up(bytes);
  if (quantum_ == 0 || r <= quantum_ / 2) return r;
  return (r + quantum_ - 1) / quantum_ * quantum_;
}

void Tier::set_quantum(std::uint64_t q) {
  std::lock_guard<std::mutex> lock(mu_);
  quantum_ = q == 0 ? 0 : alloc_.round_up(q);
}

std::uint64_t Tier::quantum() const {
  std::lock_guard<std::mutex> lock(mu_);
  return quantum_;
}

Extent Tier::allocate(std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  bytes = sized_locked(bytes);
  auto e = alloc_.allocate(bytes);
  if (!e) throw OutOfMemory(name_, bytes, alloc_.bytes_free(), alloc_.bytes_largest_free());
  return *e;
}

std::optional<Extent> Tier::try_allocate(std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.allocate(sized_locked(bytes));
}

void Tier::free(const Extent& extent) {
  std::lock_guard<std::mutex> lock(mu_);
  alloc_.free(extent);
}

std::uint64_t Tier::round_up(std::uint64_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  return sized_locked(bytes);
}

TierStats Tier::stats() const {
  TierStats s;
  s.name = name_;
  s.kind = kind_;
  s.device_index = device_index_;
  s.bytes_capacity = capacity_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.bytes_used = alloc_.bytes_used();
    s.bytes_largest_free = alloc_.bytes_largest_free();
  }
  s.bytes_pinned = bytes_pinned_.load();
  s.transfers_in_flight = in_flight_.load();
  s.bytes_moved_in = bytes_in_.load();
  s.bytes_moved_out = bytes_out_.load();
  return s;
}

}  // namespace wand::memory
