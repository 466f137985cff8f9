// LruPolicy: evicts the unpinned copy used least recently (by the injected Clock; ties go
// to the lower id). The fallback for use that no schedule announced.
//
//   FakeClock clock; LruPolicy lru(clock);
//   lru.on_access(a); clock.advance(); lru.on_access(b);
//   lru.choose_victim({{a, n, 0}, {b, n, 0}});   // -> a
//
// Threads: not thread-safe (see EvictionPolicy).
#pragma once

#include <unordered_map>

#include "memory/clock.h"
#include "memory/eviction_policy.h"

namespace wand::memory {

class LruPolicy : public EvictionPolicy {
 public:
  explicit LruPolicy(const Clock& clock) : clock_(clock) {}
  const char* name() const override { return "lru"; }
  void on_access(BlobId id) override { last_use_[id] = clock_.now(); }
  void on_remove(BlobId id) override { last_use_.erase(id); }
  std::optional<BlobId> choose_victim(const std::vector<EvictionCandidate>& candidates) const override;

 private:
  const Clock& clock_;
  std::unordered_map<BlobId, std::uint64_t> last_use_;  // never-accessed ids count as time 0
};

}  // namespace wand::memory
