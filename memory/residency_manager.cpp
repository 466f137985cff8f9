#include "memory/residency_manager.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "common/error.h"
#include "memory/memory_pool.h"

namespace wand::memory {

std::vector<BlobId> ResidencyManager::ids(const std::vector<ScheduleEntry>& s) {
  std::vector<BlobId> out;
  out.reserve(s.size());
  for (const auto& e : s) out.push_back(e.id);
  return out;
}

ResidencyManager::ResidencyManager(std::vector<ScheduleEntry> schedule, std::uint64_t capacity_bytes,
                                   std::uint64_t window_bytes)
    : schedule_(std::move(schedule)), next_(ids(schedule_)), capacity_(capacity_bytes), window_(window_bytes) {}

ResidencyPlan ResidencyManager::plan(std::size_t position, const std::vector<ResidentCopy>& resident) const {
  ResidencyPlan p;
  p.position = position;
  struct Res {
    std::uint64_t bytes;
    bool evictable;
  };
  std::unordered_map<BlobId, Res> res;
  std::uint64_t used = 0;
  for (const auto& r : resident) {
    res[r.id] = {r.bytes, r.ready && r.pins == 0};
    used += r.bytes;
  }
  std::unordered_set<BlobId> wanted;  // window members: protected from eviction
  std::uint64_t window_bytes = 0;
  for (std::size_t i = position; i < schedule_.size(); ++i) {
    const ScheduleEntry& e = schedule_[i];
    if (!wanted.insert(e.id).second) continue;
    if (i > position && window_bytes >= window_) break;
    window_bytes += e.bytes;
    if (res.count(e.id)) continue;
    // Make room by Belady, never evicting something needed before e.
    bool fits = true;
    while (capacity_ < used || capacity_ - used < e.bytes) {
      const BlobId* victim = nullptr;
      std::size_t victim_next = 0;
      std::uint64_t victim_bytes = 0;
      for (const auto& [id, r] : res) {
        if (!r.evictable || wanted.count(id)) continue;
        const std::size_t nu = next_.next_use(id, position);
        if (!victim || nu > victim_next || (nu == victim_next && (r.bytes > victim_bytes ||
                                                                  (r.bytes == victim_bytes && id < *victim)))) {
          victim = &id;
          victim_next = nu;
          victim_bytes = r.bytes;
        }
      }
      if (!victim || victim_next <= i) {
        fits = false;
        break;
      }
      p.evict.push_back(*victim);
      used -= victim_bytes;
      res.erase(*victim);
    }
    if (!fits) {
      if (i == position) p.demand_fits = false;
      break;
    }
    p.prefetch.push_back(e.id);
    res[e.id] = {e.bytes, false};
    used += e.bytes;
  }
  p.bytes_resident_after = used;
  return p;
}

std::vector<Completion> ResidencyManager::apply(const ResidencyPlan& plan, MemoryPool& pool, int tier) const {
  for (BlobId id : plan.evict) pool.evict(id, tier);
  std::vector<Completion> out;
  out.reserve(plan.prefetch.size());
  RequestOptions opts;
  opts.evict = false;
  for (BlobId id : plan.prefetch) out.push_back(pool.request(id, tier, opts));
  return out;
}

}  // namespace wand::memory
