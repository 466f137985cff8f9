#include "memory/lru_policy.h"

namespace wand::memory {

std::optional<BlobId> LruPolicy::choose_victim(const std::vector<EvictionCandidate>& candidates) const {
  std::optional<BlobId> best;
  std::uint64_t best_t = 0;
  for (const auto& c : candidates) {
    if (c.pins > 0) continue;
    auto it = last_use_.find(c.id);
    const std::uint64_t t = it == last_use_.end() ? 0 : it->second;
    if (!best || t < best_t || (t == best_t && c.id < *best)) {
      best = c.id;
      best_t = t;
    }
  }
  return best;
}

}  // namespace wand::memory
