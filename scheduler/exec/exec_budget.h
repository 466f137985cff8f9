// Device budget of the streaming executor: everything on the card must fit one number.
//
//   DeviceBudget b;  b.budget_bytes = 24_GiB;  b.context_bytes = measured;  // CUDA context
//   b.slot_bytes = pool.tier(dev).bytes_capacity();                          // weight slots
//   b.activation_bytes = 6_GiB;                                              // allocator cap
//   check_device_budget(b, window, max_block, dit_activation_bytes(geom));  // throws kConfig
//
// Note [Device budget]: budget >= context + slots + activations, where the slots (the
// device tier) must hold the prefetch window plus the block being released (its kernels
// may still run when the next block starts), and the activation cap (LibTorch's caching
// allocator) must hold the estimated activation peak of a CFG step. A budget that cannot
// is refused with every number in the message. Worked example (A14B, 480p, 81 frames,
// bf16): block 670 MiB, window 2 blocks -> slots >= 3 x 670 MiB = 2.0 GiB; activations
// ~= 2 x 32,760 x 5,120 x 4 B (the two fp32 residual streams, 1.25 GiB) + the block's
// inner peak (~2.3 GiB, architecture.md) -> ~3.9 GiB; context ~0.5 GiB: fits 24 GiB with
// room to keep ~25 blocks resident.
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "model/dit_memory.h"

namespace wand::sched::exec {

struct DeviceBudget {
  std::uint64_t budget_bytes = 0;      // everything on the card
  std::uint64_t context_bytes = 0;     // CUDA context + LibTorch's kernels (measured; 0 on CPU)
  std::uint64_t slot_bytes = 0;        // the device tier's capacity (weight slots)
  std::uint64_t activation_bytes = 0;  // LibTorch's caching allocator cap
};

// The geometry the activation estimate needs (model/dit_memory.h: tokens, dim, ffn_dim,
// text_len, chunk_tokens, run_bytes), with the streams on the card following spill_uncond.
struct DitGeometry : model::DitActivationShape {
  bool spill_uncond = false;     // the uncond stream waits in host memory (Note [Branch spill])
};

// Estimated activation peak of one CFG step (both residual streams, the inputs, and the
// larger of the attention and FFN peaks inside one block), see Note [Device budget].
std::uint64_t dit_activation_bytes(const DitGeometry& g);

// The largest token chunk (WanDit::set_chunk_tokens) whose dit_activation_bytes estimate
// fits `activation_room`: 0 (no chunking) when the whole sequence fits, else a chunk in
// [min(min_chunk, tokens), tokens). g.chunk_tokens is ignored. Throws wand::Error(kConfig)
// naming the room and the estimates when even the smallest chunk does not fit.
std::int64_t choose_chunk_tokens(const DitGeometry& g, std::uint64_t activation_room, std::int64_t min_chunk = 256);

// Throws wand::Error(kConfig) naming the numbers when the budget cannot hold the window
// and the activations. activation_need_bytes = 0 skips the activation check.
void check_device_budget(const DeviceBudget& b, std::uint64_t window_bytes, std::uint64_t max_block_bytes,
                         std::uint64_t activation_need_bytes);

}  // namespace wand::sched::exec
