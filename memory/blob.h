// Blob: a named byte range with a copy per tier (value types; the pool's BlobTable holds
// them). A blob is either backed by a region of an existing file (a tensor or a packed
// block inside a safetensors shard: the file is its permanent copy) or created empty (a
// spill: its data exists only in its copies).
//
// Copy states: kAbsent -> kLoading (extent allocated, transfer in flight) -> kReady
// -> kEvicting (being released) -> kAbsent. A failed load goes kLoading -> kAbsent.
// `pins` counts users reading the copy plus transfers reading it as their source; a copy
// with pins > 0 is never evicted. `generation` grows each time a copy goes back to
// kAbsent, so a stale unpin (of a copy that failed and was reloaded) is ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "memory/completion.h"
#include "memory/extent_allocator.h"

namespace wand::memory {

using BlobId = std::uint64_t;

enum class CopyState { kAbsent, kLoading, kReady, kEvicting };
const char* copy_state_name(CopyState state);  // "absent" | "loading" | "ready" | "evicting"

struct BlobCopy {
  CopyState state = CopyState::kAbsent;
  Extent extent;             // on the copy's tier (valid unless kAbsent)
  std::uint64_t head = 0;    // first byte of the blob inside the extent (see Note [Chunked direct I/O])
  std::uint32_t pins = 0;
  std::uint64_t generation = 0;
  Completion pending;        // valid while kLoading
  std::uint64_t last_use = 0;  // pool clock tick of the last request / pin
};

struct FileRange {
  std::string path;
  std::uint64_t offset = 0;
};

struct Blob {
  BlobId id = 0;
  std::string name;
  std::uint64_t bytes = 0;
  std::optional<FileRange> file;  // set for file-backed blobs
  bool has_data = false;          // an empty blob gets data once a first copy is made
  std::vector<BlobCopy> copies;   // one per tier, indexed like MemoryPool's tiers
};

// One copy as the residency planner sees it (MemoryPool::resident()).
struct ResidentCopy {
  BlobId id = 0;
  std::uint64_t bytes = 0;  // bytes the copy takes on its tier
  std::uint32_t pins = 0;
  bool ready = false;       // false: still loading (not evictable)
};

}  // namespace wand::memory
