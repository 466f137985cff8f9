// UlyssesDit: Ulysses sequence parallelism for one WanDit forward over the
// ranks of a Collective group (DeepSpeed-Ulysses, as in the official
// wan/distributed/sequence_parallel.py).
//
//   // on each rank's thread, same inputs on every rank:
//   UlyssesDit u(dit, *group[r]);
//   at::Tensor v = u.forward(x, t, context, seq_len);   // [out_dim, F, H, W] fp32, on every rank
//   // stage API (weights handed in by an executor):
//   UlyssesInputs in = u.embed(x, t, context, seq_len);
//   at::Tensor h = in.local.tokens;                     // [1, S_pad / W, D]
//   for (int i = 0; i < dit.num_layers(); ++i) h = u.block(i, h, in, w_i);
//   at::Tensor v = u.head(h, in);
//   // streamed weights (scheduler/exec/block_streamer.h), both CFG branches per block:
//   auto [c, uc] = u.forward_cfg(x, t, ctx, ctx_null, seq_len, c10::nullopt, streamed.loop(k));
//
// Note [Ulysses layout]: every rank embeds the full input (patch, time, text
// and RoPE tables are cheap next to the blocks), pads the sequence to S_pad =
// seq_len rounded up to a multiple of W and keeps the token slice
// [r * S_pad / W, (r + 1) * S_pad / W). In each block's self-attention the
// local q, k, v [1, S_pad/W, N, d] go through one all_to_all each (split
// heads, gather tokens) -> [1, S_pad, N/W, d]; attention runs over the whole
// sequence for this rank's heads with the keys cut to the true token count
// (k_lens: padded tokens are never keys), and one all_to_all back (split
// tokens, gather heads) -> [1, S_pad/W, N, d]. Cross-attention, FFN and the
// head are token-local; the head output [1, S_pad/W, 4 * out_dim] is
// all-gathered to [1, S_pad, 4 * out_dim] and unpatchified (the padding rows
// dropped). Worked example: 25 tokens on W = 4 ranks -> S_pad 28, 7 tokens a
// rank; rank 3 holds tokens 21..27, of which 25..27 are padding.
// Requires num_heads % W == 0 (the constructor throws kConfig otherwise).
//
// Holds references to the DiT and the collective; both must outlive it.
// One object per rank, used by that rank's thread.
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

#include "model/dit.h"
#include "scheduler/multigpu/collective.h"

namespace wand::sched {

struct UlyssesInputs {
  model::DitInputs global;  // full-sequence inputs, seq_len = S_pad (used by unpatchify)
  model::DitInputs local;   // this rank's token slice, with the all-to-all self-attention set
  int64_t padded_len = 0;   // S_pad
  int64_t token_begin = 0;  // first global token index of the slice
  int64_t local_len = 0;    // S_pad / W
};

class UlyssesDit {
 public:
  UlyssesDit(const model::WanDit& dit, Collective& group);

  // seq_len as for WanDit::embed (>= F * H/2 * W/2); padded here to a multiple of W.
  // t: scalar / [1], or per-token [seq_len] / [1, seq_len] (padded with its last value).
  UlyssesInputs embed(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                      const c10::optional<at::Tensor>& y = c10::nullopt) const;
  // Replaces the text embedding (the other CFG branch): context [L_txt, text_dim].
  void set_context(UlyssesInputs& in, const at::Tensor& context) const;
  // h [1, S_pad/W, D] -> [1, S_pad/W, D] fp32.
  at::Tensor block(int64_t i, const at::Tensor& h, const UlyssesInputs& in, const model::DitBlockWeights& w) const;
  // h [1, S_pad/W, D] -> [out_dim, F, H, W] fp32, the same on every rank.
  at::Tensor head(const at::Tensor& h, const UlyssesInputs& in) const;
  // embed -> all blocks (the DiT's owned weights) -> head.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                     const c10::optional<at::Tensor>& y = c10::nullopt) const;
  // The same with the block weights handed in by `blocks` (one pass, e.g. streamed).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                     const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const;
  // Both CFG branches interleaved per block (each block's weights fetched once per step,
  // as the single-GPU executor does): (cond, uncond), each [out_dim, F, H, W] fp32, the
  // same on every rank. Every rank runs the collectives cond first, then uncond.
  std::pair<at::Tensor, at::Tensor> forward_cfg(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                                const at::Tensor& context_null, int64_t seq_len,
                                                const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const;

  // Padded length for seq_len tokens on `world` ranks.
  static int64_t padded_len(int64_t seq_len, int world) { return (seq_len + world - 1) / world * world; }

 private:
  const model::WanDit& dit_;
  Collective& group_;
};

}  // namespace wand::sched
