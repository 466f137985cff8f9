#include "memory/belady_policy.h"

#include <algorithm>

namespace wand::memory {

NextUseIndex::NextUseIndex(const std::vector<BlobId>& schedule) {
  for (std::size_t i = 0; i < schedule.size(); ++i) positions_[schedule[i]].push_back(i);
}

std::size_t NextUseIndex::next_use(BlobId id, std::size_t from) const {
  auto it = positions_.find(id);
  if (it == positions_.end()) return kNever;
  auto p = std::lower_bound(it->second.begin(), it->second.end(), from);
  return p == it->second.end() ? kNever : *p;
}

BeladyPolicy::BeladyPolicy(std::vector<BlobId> schedule)
    : schedule_(std::move(schedule)), index_(schedule_) {}

void BeladyPolicy::on_access(BlobId id) {
  if (position_ < schedule_.size() && schedule_[position_] == id) ++position_;
}

std::optional<BlobId> BeladyPolicy::choose_victim(const std::vector<EvictionCandidate>& candidates) const {
  const EvictionCandidate* best = nullptr;
  std::size_t best_next = 0;
  for (const auto& c : candidates) {
    if (c.pins > 0) continue;
    const std::size_t next = next_use(c.id);
    const bool better = !best || next > best_next ||
                        (next == best_next && (c.bytes > best->bytes ||
                                               (c.bytes == best->bytes && c.id < best->id)));
    if (better) {
      best = &c;
      best_next = next;
    }
  }
  if (!best) return std::nullopt;
  return best->id;
}

}  // namespace wand::memory
