// BeladyPolicy: evicts the unpinned copy whose next use in the schedule is farthest away
// (never used again counts as infinitely far; ties go to the larger copy, then the lower
// id). Optimal in misses when every copy has the same size and the future is known - and
// a diffusion job's schedule is known before it starts.
//
//   BeladyPolicy belady({a, b, c, a, b});   // the ordered uses ahead
//   belady.on_access(a);                    // advances the cursor past a matching use
//   belady.set_position(3);                 // or jump
//   belady.choose_victim(cands);
//
// Threads: not thread-safe (see EvictionPolicy).
#pragma once

#include <cstddef>
#include <limits>
#include <unordered_map>
#include <vector>

#include "memory/eviction_policy.h"

namespace wand::memory {

// Index of the first use of `id` at or after `from` in `positions` (sorted), or kNever.
class NextUseIndex {
 public:
  static constexpr std::size_t kNever = std::numeric_limits<std::size_t>::max();
  explicit NextUseIndex(const std::vector<BlobId>& schedule);
  std::size_t next_use(BlobId id, std::size_t from) const;

 private:
  std::unordered_map<BlobId, std::vector<std::size_t>> positions_;
};

class BeladyPolicy : public EvictionPolicy {
 public:
  explicit BeladyPolicy(std::vector<BlobId> schedule);
  const char* name() const override { return "belady"; }
  void on_access(BlobId id) override;
  std::optional<BlobId> choose_victim(const std::vector<EvictionCandidate>& candidates) const override;

  void set_position(std::size_t position) { position_ = position; }
  std::size_t position() const { return position_; }
  std::size_t next_use(BlobId id) const { return index_.next_use(id, position_); }

 private:
  std::vector<BlobId> schedule_;
  NextUseIndex index_;
  std::size_t position_ = 0;  // index of the next use to happen
};

}  // namespace wand::memory
