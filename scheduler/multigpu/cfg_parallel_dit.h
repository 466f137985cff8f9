// CfgParallelDit: classifier-free guidance with the two branches on two ranks
// (rank 0 of cfg_group: conditional, rank 1: unconditional), each branch
// optionally itself Ulysses sequence parallel over seq_group (CFG x Ulysses:
// 2 groups of N ranks; rank (b, s) is in cfg group s at position b and in
// sequence group b at position s).
//
//   // 2 ranks: on rank b's thread
//   CfgParallelDit p(dit, *cfg[b]);
//   FlowSampler s(SolverKind::kUniPC, steps, shift);       // one per rank, same on both
//   while (!s.done()) x = s.step(p.forward_guided(x, t_of(s), ctx, ctx_null, g, seq_len), x);
//   // 2 x 2 ranks: p(dit, *cfg[s], seq[b].get())
//   // streamed weights (scheduler/exec/block_streamer.h): each rank streams the
//   // blocks of its own branch to its own card from the shared host copy
//   auto [c, uc] = p.forward_both(x, t, ctx, ctx_null, seq_len, c10::nullopt, streamed.loop(k));
//
// After each forward the two branch predictions [out_dim, F, H, W] are
// all-gathered over cfg_group and combined with model::cfg_combine, so every
// rank holds the same guided prediction and steps the same sampler state.
// Holds references (the DiT, the groups must outlive it). One object per
// rank, used by that rank's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include <ATen/ATen.h>

#include "model/dit.h"
#include "scheduler/multigpu/collective.h"
#include "scheduler/multigpu/ulysses_dit.h"

namespace wand::sched {

class CfgParallelDit {
 public:
  // cfg_group must have exactly 2 ranks; seq_group (optional) is this rank's
  // sequence-parallel group (its branch's ranks).
  CfgParallelDit(const model::WanDit& dit, Collective& cfg_group, Collective* seq_group = nullptr);
  ~CfgParallelDit();

  bool is_conditional() const { return cfg_group_.rank() == 0; }
  // This rank's branch prediction [out_dim, F, H, W] fp32 (context picked by the rank).
  at::Tensor forward_branch(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                            const at::Tensor& context_null, int64_t seq_len,
                            const c10::optional<at::Tensor>& y = c10::nullopt) const;
  // uncond + guide_scale * (cond - uncond), identical on every rank.
  at::Tensor forward_guided(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                            const at::Tensor& context_null, double guide_scale, int64_t seq_len,
                            const c10::optional<at::Tensor>& y = c10::nullopt) const;
  // With the block weights handed in by `blocks` (one pass per call, e.g. streamed).
  at::Tensor forward_branch(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                            const at::Tensor& context_null, int64_t seq_len, const c10::optional<at::Tensor>& y,
                            const model::BlockLoop& blocks) const;
  // Both branch predictions (cond, uncond), gathered over the guidance group, the same on
  // every rank.
  std::pair<at::Tensor, at::Tensor> forward_both(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                                 const at::Tensor& context_null, int64_t seq_len,
                                                 const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const;
  at::Tensor forward_guided(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                            const at::Tensor& context_null, double guide_scale, int64_t seq_len,
                            const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const;

 private:
  const model::WanDit& dit_;
  Collective& cfg_group_;
  std::unique_ptr<UlyssesDit> ulysses_;  // set when a seq_group is given
};

}  // namespace wand::sched
