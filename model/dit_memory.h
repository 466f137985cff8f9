// How much memory a DiT step needs besides its weights: the one activation estimate that
// the planner (scheduler/plan/cost_model.h) and the executor's budget
// (scheduler/exec/exec_budget.h) both use, LibTorch-free (library wand_model_facts).
//
//   DitActivationShape s;  s.tokens = 75'600;  s.dim = 5120;  s.ffn_dim = 13'824;
//   s.chunk_tokens = 4096;  s.streams = 2;                   // both CFG branches on the card
//   std::uint64_t peak = dit_activation_bytes(s);
//
// Note [Activation estimate]: the peak of one CFG step is the residual streams held on the
// card between blocks (fp32 [1, S, D] each: two for the interleaved CFG branches, one when
// the uncond stream is spilled to host or the branches run on two cards), the block inputs
// (patch tokens and the two text contexts in the run dtype, the RoPE table), and the larger
// of the two peaks inside a block: attention (an fp32 copy of x, the norm output, q, k, v,
// the attention output, the o projection) or the FFN (fp32 x, the norm output, the hidden
// and GELU outputs of one token chunk, the output). A counted formula, checked against the
// allocator's peak on the GPU machine (bench/results/dit-block-h100.md).
// Free functions; any thread.
#pragma once

#include <cstdint>

namespace wand::model {

struct DitActivationShape {
  std::int64_t tokens = 0;        // sequence length S
  std::int64_t dim = 0;           // D
  std::int64_t ffn_dim = 0;       // F
  std::int64_t text_len = 512;    // text tokens
  std::int64_t chunk_tokens = 0;  // FFN / projection chunking (0 = whole sequence)
  int run_bytes = 2;              // element size of the run (GEMM) dtype
  int streams = 2;                // fp32 residual streams held on the card between blocks
};

std::uint64_t dit_activation_bytes(const DitActivationShape& s);

}  // namespace wand::model
