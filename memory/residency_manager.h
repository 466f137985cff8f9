// ResidencyManager: the residency policy of one tier for a known schedule (the ordered
// blob uses ahead, e.g. every DiT block of every step of a job). Planning is pure:
// plan(position, resident) says which copies to evict and which to prefetch; only
// apply() moves bytes, through the MemoryPool.
//
//   ResidencyManager rm(schedule, tier.bytes_capacity(), /*window_bytes=*/3 * block);
//   for (std::size_t i = 0; i < schedule.size(); ++i) {
//     ResidencyPlan p = rm.plan(i, pool.resident(dev));
//     std::vector<Completion> loads = rm.apply(p, pool, dev);
//     PinnedCopy w = pool.pin(schedule[i].id, dev);  w.wait();  run(w.data());
//   }
//
// Note [Prefetch window]: from `position`, the distinct blobs of the schedule are taken in
// order until their bytes reach window_bytes (the use at `position` always counts: it is
// the demand). Each one that is not resident is planned as a prefetch; when it does not
// fit in the capacity left, the unpinned ready copy whose next use is farthest away is
// evicted (Belady) - but only if that next use is later than the blob being brought in,
// otherwise planning stops (bringing a later blob in by evicting a sooner one only adds
// traffic). Copies still loading and pinned copies are never victims. Example: capacity 3
// blocks, window 2 blocks, resident {A, B, C}, schedule ahead D A B E C: the window is
// {D, A}; D needs room; next uses A=1, B=2, C=4 -> evict C, prefetch D. Plans use the byte
// sizes given (the caller passes MemoryPool::copy_bytes), so byte budgets hold; extent
// fragmentation can still make apply() throw OutOfMemory (never with equal-sized blobs).
//
// Threads: plan() is const and thread-compatible; apply() as MemoryPool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "memory/belady_policy.h"
#include "memory/blob.h"
#include "memory/completion.h"

namespace wand::memory {

class MemoryPool;

struct ScheduleEntry {
  BlobId id = 0;
  std::uint64_t bytes = 0;  // bytes the copy takes on the tier
};

struct ResidencyPlan {
  std::size_t position = 0;
  std::vector<BlobId> evict;     // in this order, before the prefetches
  std::vector<BlobId> prefetch;  // in schedule order; the first is the demand when missing
  bool demand_fits = true;       // false: the use at `position` cannot be made resident
  std::uint64_t bytes_resident_after = 0;
};

class ResidencyManager {
 public:
  ResidencyManager(std::vector<ScheduleEntry> schedule, std::uint64_t capacity_bytes,
                   std::uint64_t window_bytes);

  ResidencyPlan plan(std::size_t position, const std::vector<ResidentCopy>& resident) const;
  // Evicts, then requests the prefetches (without LRU eviction); returns their completions
  // in plan order. Throws what MemoryPool::evict / request throw.
  std::vector<Completion> apply(const ResidencyPlan& plan, MemoryPool& pool, int tier) const;

  std::size_t size() const { return schedule_.size(); }
  const std::vector<ScheduleEntry>& schedule() const { return schedule_; }
  std::size_t next_use(BlobId id, std::size_t from) const { return next_.next_use(id, from); }

 private:
  static std::vector<BlobId> ids(const std::vector<ScheduleEntry>& s);

  std::vector<ScheduleEntry> schedule_;
  NextUseIndex next_;
  std::uint64_t capacity_;
  std::uint64_t window_;
};

}  // namespace wand::memory
