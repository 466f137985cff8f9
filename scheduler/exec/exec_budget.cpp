#include "scheduler/exec/exec_budget.h"

#include <algorithm>

#include "common/error.h"
#include "model/dit_memory.h"

namespace wand::sched::exec {

std::uint64_t dit_activation_bytes(const DitGeometry& g) {
  model::DitActivationShape s = g;
  // With the uncond stream spilled to host only one stream is on the device between blocks
  // (the other comes back for its block and leaves after it).
  s.streams = g.spill_uncond ? 1 : 2;
  return model::dit_activation_bytes(s);
}

std::int64_t choose_chunk_tokens(const DitGeometry& geom, std::uint64_t activation_room, std::int64_t min_chunk) {
  DitGeometry g = geom;
  g.chunk_tokens = 0;
  const std::uint64_t full = dit_activation_bytes(g);
  if (full <= activation_room) return 0;
  const std::int64_t lo_chunk = std::max<std::int64_t>(1, std::min(min_chunk, g.tokens));
  g.chunk_tokens = lo_chunk;
  const std::uint64_t smallest = dit_activation_bytes(g);
  if (smallest > activation_room) {
    throw Error(ErrorCode::kConfig, "device budget: activation room " + format_bytes(activation_room) +
                                        " is below the estimated activation peak " + format_bytes(smallest) +
                                        " even in chunks of " + std::to_string(lo_chunk) + " tokens (" +
                                        std::to_string(g.tokens) + " tokens, unchunked " + format_bytes(full) +
                                        "): raise the budget or shrink the device tier's weight slots");
  }
  // The estimate grows with the chunk: binary search the largest chunk that fits.
  std::int64_t lo = lo_chunk, hi = g.tokens - 1;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo + 1) / 2;
    g.chunk_tokens = mid;
    if (dit_activation_bytes(g) <= activation_room) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

void check_device_budget(const DeviceBudget& b, std::uint64_t window_bytes, std::uint64_t max_block_bytes,
                         std::uint64_t activation_need_bytes) {
  const std::uint64_t slots_need = window_bytes + max_block_bytes;
  if (b.slot_bytes < slots_need) {
    throw Error(ErrorCode::kConfig, "device budget: weight slots " + format_bytes(b.slot_bytes) +
                                        " cannot hold the prefetch window " + format_bytes(window_bytes) +
                                        " plus the block being released " + format_bytes(max_block_bytes) + " (" +
                                        format_bytes(slots_need) + ")");
  }
  if (activation_need_bytes > 0 && b.activation_bytes < activation_need_bytes) {
    throw Error(ErrorCode::kConfig, "device budget: activation cap " + format_bytes(b.activation_bytes) +
                                        " is below the estimated activation peak " +
                                        format_bytes(activation_need_bytes) + " (chunk the sequence or raise it)");
  }
  if (b.budget_bytes > 0) {
    const std::uint64_t total = b.context_bytes + b.slot_bytes + b.activation_bytes;
    if (total > b.budget_bytes) {
      throw Error(ErrorCode::kConfig, "device budget " + format_bytes(b.budget_bytes) + " < context " +
                                          format_bytes(b.context_bytes) + " + weight slots " +
                                          format_bytes(b.slot_bytes) + " + activation cap " +
                                          format_bytes(b.activation_bytes) + " = " + format_bytes(total));
    }
  }
}

}  // namespace wand::sched::exec
