#include "scheduler/multigpu/cfg_parallel_dit.h"

#include "common/error.h"
#include "model/sampler_schedule.h"

namespace wand::sched {

CfgParallelDit::CfgParallelDit(const model::WanDit& dit, Collective& cfg_group, Collective* seq_group)
    : dit_(dit), cfg_group_(cfg_group) {
  if (cfg_group.world_size() != 2) {
    throw Error(ErrorCode::kConfig, "cfg-parallel: the guidance group must have 2 ranks, got " +
                                        std::to_string(cfg_group.world_size()) + " (" + cfg_group.describe() + ")");
  }
  if (seq_group != nullptr) ulysses_ = std::make_unique<UlyssesDit>(dit, *seq_group);
}

CfgParallelDit::~CfgParallelDit() = default;

at::Tensor CfgParallelDit::forward_branch(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                          const at::Tensor& context_null, int64_t seq_len,
                                          const c10::optional<at::Tensor>& y) const {
  const at::Tensor& ctx = is_conditional() ? context : context_null;
  if (ulysses_) return ulysses_->forward(x, t, ctx, seq_len, y);
  return dit_.forward(x, t, ctx, seq_len, y);
}

at::Tensor CfgParallelDit::forward_guided(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                          const at::Tensor& context_null, double guide_scale, int64_t seq_len,
                                          const c10::optional<at::Tensor>& y) const {
  at::Tensor mine = forward_branch(x, t, context, context_null, seq_len, y);
  at::Tensor both = cfg_group_.all_gather(mine.unsqueeze(0), 0);  // [2, out_dim, F, H, W]: cond, uncond
  return model::cfg_combine(both.select(0, 1), both.select(0, 0), guide_scale);
}

at::Tensor CfgParallelDit::forward_branch(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                          const at::Tensor& context_null, int64_t seq_len,
                                          const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const {
  const at::Tensor& ctx = is_conditional() ? context : context_null;
  if (ulysses_) return ulysses_->forward(x, t, ctx, seq_len, y, blocks);
  return dit_.forward(x, t, ctx, seq_len, y, blocks);
}

std::pair<at::Tensor, at::Tensor> CfgParallelDit::forward_both(const at::Tensor& x, const at::Tensor& t,
                                                               const at::Tensor& context,
                                                               const at::Tensor& context_null, int64_t seq_len,
                                                               const c10::optional<at::Tensor>& y,
                                                               const model::BlockLoop& blocks) const {
  at::Tensor mine = forward_branch(x, t, context, context_null, seq_len, y, blocks);
  at::Tensor both = cfg_group_.all_gather(mine.unsqueeze(0), 0);  // [2, out_dim, F, H, W]: cond, uncond
  return {both.select(0, 0), both.select(0, 1)};
}

at::Tensor CfgParallelDit::forward_guided(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context,
                                          const at::Tensor& context_null, double guide_scale, int64_t seq_len,
                                          const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const {
  auto [c, u] = forward_both(x, t, context, context_null, seq_len, y, blocks);
  return model::cfg_combine(u, c, guide_scale);
}

}  // namespace wand::sched
