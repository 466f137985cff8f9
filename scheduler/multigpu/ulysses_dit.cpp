#include "scheduler/multigpu/ulysses_dit.h"

#include "common/error.h"
#include "common/log.h"
#include "common/torch_compat.h"

namespace wand::sched {

UlyssesDit::UlyssesDit(const model::WanDit& dit, Collective& group) : dit_(dit), group_(group) {
  const int64_t heads = dit.config().num_heads;
  const int W = group.world_size();
  if (W < 1 || heads % W != 0) {
    throw Error(ErrorCode::kConfig, "ulysses: num_heads " + std::to_string(heads) + " of " + dit.config().variant +
                                        " does not divide by the sequence-parallel degree " + std::to_string(W) +
                                        " (" + group.describe() + ")");
  }
}

UlyssesInputs UlyssesDit::embed(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                                const c10::optional<at::Tensor>& y) const {
  const int W = group_.world_size(), r = group_.rank();
  UlyssesInputs u;
  u.padded_len = padded_len(seq_len, W);
  at::Tensor tt = t;
  if (t.numel() > 1 && u.padded_len > seq_len) {
    if (t.numel() != seq_len) {
      throw Error(ErrorCode::kBadRequest, "ulysses: per-token t has " + std::to_string(t.numel()) +
                                              " values, expected seq_len " + std::to_string(seq_len));
    }
    at::Tensor f = t.flatten();
    tt = at::cat({f, f.slice(0, seq_len - 1, seq_len).expand({u.padded_len - seq_len})});
  }
  u.global = dit_.embed(x, tt, context, u.padded_len, y);
  u.local_len = u.padded_len / W;
  u.token_begin = r * u.local_len;
  const int64_t s0 = u.token_begin, s1 = s0 + u.local_len;
  model::DitInputs& l = u.local;
  l = u.global;
  l.tokens = u.global.tokens.slice(1, s0, s1);
  l.rope = u.global.rope.slice(0, s0, s1);
  if (u.global.row_of_token.defined()) l.row_of_token = u.global.row_of_token.slice(0, s0, s1);
  l.seq_len = u.local_len;
  l.num_tokens = std::max<int64_t>(0, std::min(u.global.num_tokens, s1) - s0);  // real tokens in the slice
  const int64_t keys = u.global.num_tokens;  // k_lens: the true token count
  Collective* g = &group_;
  l.self_attention = [g, keys](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    // q, k, v [1, S_pad/W, N, d] -> [1, S_pad, N/W, d]: split heads, gather tokens.
    at::Tensor qa = g->all_to_all(q, 2, 1);
    at::Tensor ka = g->all_to_all(k, 2, 1).slice(1, 0, keys);
    at::Tensor va = g->all_to_all(v, 2, 1).slice(1, 0, keys);
    at::Tensor o = compat::sdpa(qa.transpose(1, 2), ka.transpose(1, 2), va.transpose(1, 2)).transpose(1, 2);
    // [1, S_pad, N/W, d] -> [1, S_pad/W, N, d]: split tokens, gather heads.
    return g->all_to_all(o, 1, 2);
  };
  return u;
}

void UlyssesDit::set_context(UlyssesInputs& in, const at::Tensor& context) const {
  in.global.context = dit_.embed_text(context);
  in.local.context = in.global.context;
}

at::Tensor UlyssesDit::block(int64_t i, const at::Tensor& h, const UlyssesInputs& in,
                             const model::DitBlockWeights& w) const {
  return dit_.block(i, h, in.local, w);
}

at::Tensor UlyssesDit::head(const at::Tensor& h, const UlyssesInputs& in) const {
  at::Tensor part = dit_.head_tokens(h, in.local);      // [1, S_pad/W, 4 * out_dim]
  at::Tensor full = group_.all_gather(part, 1);         // [1, S_pad, 4 * out_dim]
  return dit_.unpatchify(full, in.global);
}

at::Tensor UlyssesDit::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                               const c10::optional<at::Tensor>& y) const {
  UlyssesInputs in = embed(x, t, context, seq_len, y);
  at::Tensor h = in.local.tokens;
  for (int64_t i = 0; i < dit_.num_layers(); ++i) h = block(i, h, in, dit_.block_weights(i));
  return head(h, in);
}

at::Tensor UlyssesDit::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                               const c10::optional<at::Tensor>& y, const model::BlockLoop& blocks) const {
  UlyssesInputs in = embed(x, t, context, seq_len, y);
  at::Tensor h = in.local.tokens;
  blocks([&](int64_t i, const model::DitBlockWeights& w) { h = block(i, h, in, w); });
  return head(h, in);
}

std::pair<at::Tensor, at::Tensor> UlyssesDit::forward_cfg(const at::Tensor& x, const at::Tensor& t,
                                                          const at::Tensor& context, const at::Tensor& context_null,
                                                          int64_t seq_len, const c10::optional<at::Tensor>& y,
                                                          const model::BlockLoop& blocks) const {
  UlyssesInputs in_c = embed(x, t, context, seq_len, y);
  UlyssesInputs in_u = in_c;
  set_context(in_u, context_null);
  at::Tensor hc = in_c.local.tokens, hu = in_u.local.tokens;
  blocks([&](int64_t i, const model::DitBlockWeights& w) {
    hc = block(i, hc, in_c, w);
    hu = block(i, hu, in_u, w);
  });
  at::Tensor c = head(hc, in_c);
  return {c, head(hu, in_u)};
}

}  // namespace wand::sched
