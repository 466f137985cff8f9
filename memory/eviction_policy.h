// EvictionPolicy: chooses which copy on a tier to give up. It sees only blob ids, sizes,
// pin counts and time (an injected Clock) - never pointers, streams or tiers.
//
//   LruPolicy lru(clock);
//   lru.on_access(id);                                   // each use of a copy
//   std::optional<BlobId> v = lru.choose_victim(cands);  // nullopt: nothing evictable
//
// Threads: not thread-safe; the owner (MemoryPool, ResidencyManager, a test) serializes.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "memory/blob.h"

namespace wand::memory {

struct EvictionCandidate {
  BlobId id = 0;
  std::uint64_t bytes = 0;
  std::uint32_t pins = 0;  // pinned candidates are never chosen
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual const char* name() const = 0;
  // A use of the blob's copy.
  virtual void on_access(BlobId id) = 0;
  // The copy is gone (evicted, failed, released).
  virtual void on_remove(BlobId id) { (void)id; }
  virtual std::optional<BlobId> choose_victim(const std::vector<EvictionCandidate>& candidates) const = 0;
};

}  // namespace wand::memory
