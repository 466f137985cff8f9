#include "model/dit.h"

#include <tuple>

#include "common/error.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "model/checkpoint.h"
#include "model/cuda/dit_fused.h"
#include "model/rope.h"

namespace wand::model {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// rows [R, D] (one per distinct timestep) -> broadcastable [1, 1, D] or [1, s1 - s0, D].
at::Tensor per_token(const at::Tensor& rows, const DitInputs& in, int64_t s0, int64_t s1) {
  if (!in.row_of_token.defined()) return rows.reshape({1, 1, -1});
  return rows.index_select(0, in.row_of_token.slice(0, s0, s1)).unsqueeze(0);
}

// Note [Fused mixed-dtype elementwise]: on CUDA the modulation and the gated
// residual adds run as one addcmul each, reading bf16 and fp32 operands and
// writing the wanted dtype directly (the GPU kernels cast on the fly). The CPU
// kernels of LibTorch 1.13 cannot mix dtypes inside addcmul, so the CPU path
// spells the same arithmetic out in separate ops.
// out = (self + t1 * t2) in dtype `dt`; t1 has the full shape.
at::Tensor addcmul_as(const at::Tensor& self, const at::Tensor& t1, const at::Tensor& t2, at::ScalarType dt) {
  if (t1.is_cuda()) {
    at::Tensor out = at::empty(t1.sizes(), t1.options().dtype(dt));
    return at::addcmul_out(out, self, t1, t2);
  }
  return (t1.to(at::kFloat) * t2 + self).to(dt);
}

// x (fp32, owned) += y * gate, in place.
void add_gated_(at::Tensor& x, const at::Tensor& y, const at::Tensor& gate) {
  if (x.is_cuda()) {
    x.addcmul_(y, gate);
  } else {
    x.add_(y.to(at::kFloat) * gate);
  }
}

}  // namespace

WanDit WanDit::load(const CheckpointDir& ck, RunDtype run, at::Device device, bool load_blocks) {
  return load(static_cast<const TensorSource&>(ck), ck.config(), run, device, load_blocks);
}

WanDit WanDit::load(const TensorSource& src, const WanConfig& cfg, RunDtype run, at::Device device,
                    bool load_blocks) {
  WanDit m;
  m.cfg_ = cfg;
  m.run_ = run;
  m.device_ = device;
  const at::ScalarType g = gemm_dtype(run);
  // Shapes of everything we read (CheckpointDir has checked them already; other sources may not).
  auto check = [&](const std::vector<std::pair<std::string, std::vector<int64_t>>>& list) {
    for (const auto& [name, shape] : list) {
      const TensorInfo& ti = src.info(name);  // throws naming the source and key when absent
      if (ti.shape != shape) {
        throw Error(ErrorCode::kModelFormat, ti.path + ": key '" + name + "' has shape " + shape_str(ti.shape) +
                                                 ", expected " + shape_str(shape));
      }
    }
  };
  check(cfg.non_block_tensors());
  auto run_dtype_on = [&](const char* name) { return src.load(name).to(g).to(device); };
  auto fp32_on = [&](const char* name) { return src.load(name).to(g).to(at::kFloat).to(device); };
  const int64_t D = cfg.dim;
  m.patch_w_ = run_dtype_on("patch_embedding.weight").reshape({D, -1}).contiguous();
  m.patch_b_ = run_dtype_on("patch_embedding.bias");
  m.text0_w_ = run_dtype_on("text_embedding.0.weight");
  m.text0_b_ = run_dtype_on("text_embedding.0.bias");
  m.text2_w_ = run_dtype_on("text_embedding.2.weight");
  m.text2_b_ = run_dtype_on("text_embedding.2.bias");
  m.time0_w_ = fp32_on("time_embedding.0.weight");
  m.time0_b_ = fp32_on("time_embedding.0.bias");
  m.time2_w_ = fp32_on("time_embedding.2.weight");
  m.time2_b_ = fp32_on("time_embedding.2.bias");
  m.proj_w_ = fp32_on("time_projection.1.weight");
  m.proj_b_ = fp32_on("time_projection.1.bias");
  m.head_w_ = fp32_on("head.head.weight");
  m.head_b_ = fp32_on("head.head.bias");
  m.head_mod_ = fp32_on("head.modulation");
  m.freqs_ = rope_freqs(cfg.head_dim());
  // The per-token RoPE table is gathered on the run device: at 75,600 tokens the CPU gather
  // and copy of a [S, 64, 2] float64 table cost tens of ms per forward (index_select / cat /
  // a dtype cast: exact, so the table is the same wherever it is built).
  m.freqs_dev_ = m.freqs_.to(device);
  if (load_blocks) {
    m.blocks_.reserve(cfg.num_layers);
    for (int64_t i = 0; i < cfg.num_layers; ++i) {
      check(cfg.block_tensors(i));
      m.blocks_.push_back(DitBlockWeights::from(src, i, run, device));
    }
  }
  log::get("model")->info("dit load variant={} run={} device={} blocks={}", cfg.variant, run_dtype_name(run),
                          device.str(), load_blocks ? "owned" : "external");
  return m;
}

const DitBlockWeights& WanDit::block_weights(int64_t i) const {
  if (blocks_.empty()) throw Error(ErrorCode::kInternal, "dit: block weights were not loaded (load_blocks=false)");
  WAND_ASSERT(i >= 0 && i < static_cast<int64_t>(blocks_.size()), "dit: block index out of range");
  return blocks_[i];
}

at::Tensor WanDit::sinusoid(const at::Tensor& t) const {
  const int64_t half = cfg_.freq_dim / 2;
  at::Tensor pos = t.to(at::kDouble).flatten();
  at::Tensor omega = at::pow(10000.0, -at::arange(half, pos.options()).div(static_cast<double>(half)));
  at::Tensor s = at::outer(pos, omega);  // [n, half]
  return at::cat({at::cos(s), at::sin(s)}, 1);
}

at::Tensor WanDit::embed_text(const at::Tensor& context) const {
  if (context.dim() != 2 || context.size(1) != cfg_.text_dim) {
    throw Error(ErrorCode::kBadRequest, "dit: context must be [L, " + std::to_string(cfg_.text_dim) + "], got " +
                                            shape_str(context.sizes()));
  }
  if (context.size(0) > cfg_.text_len) {
    throw Error(ErrorCode::kBadRequest, "dit: context has " + std::to_string(context.size(0)) +
                                            " tokens, more than text_len " + std::to_string(cfg_.text_len));
  }
  const at::ScalarType g = gemm_dtype(run_);
  at::Tensor c = at::zeros({1, cfg_.text_len, cfg_.text_dim}, at::TensorOptions().dtype(g).device(device_));
  c.select(0, 0).slice(0, 0, context.size(0)).copy_(context.to(device_).to(g));
  at::Tensor h = at::linear(c, text0_w_, text0_b_);
  h = at::gelu(h, "tanh");
  return at::linear(h, text2_w_, text2_b_);  // [1, text_len, D]
}

DitInputs WanDit::embed(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                        const c10::optional<at::Tensor>& y) const {
  const at::ScalarType g = gemm_dtype(run_);
  const int64_t D = cfg_.dim;
  at::Tensor xin = x.to(device_);
  if (y.has_value() && y->defined()) {
    if (y->dim() != 4 || y->sizes().slice(1) != x.sizes().slice(1)) {
      throw Error(ErrorCode::kBadRequest, "dit: y " + shape_str(y->sizes()) + " does not match x " + shape_str(x.sizes()));
    }
    xin = at::cat({xin, y->to(device_).to(xin.scalar_type())}, 0);
  }
  if (xin.dim() != 4 || xin.size(0) != cfg_.in_dim) {
    throw Error(ErrorCode::kBadRequest, "dit: input must be [" + std::to_string(cfg_.in_dim) +
                                            ", F, H, W] (x and y together), got " + shape_str(xin.sizes()));
  }
  const int64_t C = xin.size(0), F = xin.size(1), H = xin.size(2), W = xin.size(3);
  if (H % cfg_.patch_h != 0 || W % cfg_.patch_w != 0) {
    throw Error(ErrorCode::kBadRequest, "dit: latent H, W must be even, got " + shape_str(xin.sizes()));
  }
  DitInputs in;
  in.grid_f = F;
  in.grid_h = H / 2;
  in.grid_w = W / 2;
  in.num_tokens = F * in.grid_h * in.grid_w;
  in.seq_len = seq_len;
  const int64_t L = in.num_tokens;
  if (seq_len < L) {
    throw Error(ErrorCode::kBadRequest, "dit: seq_len " + std::to_string(seq_len) + " < number of tokens " +
                                            std::to_string(L));
  }
  // Patch embedding as a GEMM over 2x2 patches flattened in (c, kh, kw) order.
  at::Tensor patches = xin.to(g).reshape({C, F, in.grid_h, 2, in.grid_w, 2}).permute({1, 2, 4, 0, 3, 5}).reshape({L, C * 4});
  at::Tensor tok = at::linear(patches, patch_w_, patch_b_);  // [L, D]
  if (seq_len == L) {
    in.tokens = tok.unsqueeze(0);
  } else {
    in.tokens = at::zeros({1, seq_len, D}, tok.options());
    in.tokens.select(0, 0).slice(0, 0, L).copy_(tok);
  }
  // Time embedding per distinct timestep.
  at::Tensor tt = t.to(device_).to(at::kDouble).flatten();
  at::Tensor rows;
  if (tt.numel() == 1) {
    rows = tt;
  } else {
    if (tt.numel() != seq_len) {
      throw Error(ErrorCode::kBadRequest, "dit: per-token t has " + std::to_string(tt.numel()) +
                                              " values, expected seq_len " + std::to_string(seq_len));
    }
    auto u = at::_unique2(tt, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/false);
    rows = std::get<0>(u);
    if (rows.numel() > 1) in.row_of_token = std::get<1>(u).reshape({seq_len}).to(at::kLong);
  }
  in.sin_emb = sinusoid(rows);  // [R, freq_dim] float64
  at::Tensor s32 = in.sin_emb.to(at::kFloat);
  in.e = at::linear(at::silu(at::linear(s32, time0_w_, time0_b_)), time2_w_, time2_b_);  // [R, D]
  in.e0 = at::linear(at::silu(in.e), proj_w_, proj_b_).reshape({-1, 6, D});             // [R, 6, D]
  in.context = embed_text(context);
  in.rope = rope_token_table(freqs_dev_, F, in.grid_h, in.grid_w, seq_len,
                             run_ == RunDtype::kFloat32 ? at::kDouble : at::kFloat);
  return in;
}

at::Tensor WanDit::linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
  const at::ScalarType g = gemm_dtype(run_);
  const at::Tensor& wg = w.scalar_type() == g ? w : w.to(g);
  const at::Tensor& bg = b.scalar_type() == g ? b : b.to(g);
  at::Tensor xg = x.scalar_type() == g ? x : x.to(g);
  const int64_t S = x.size(1);
  if (chunk_tokens_ <= 0 || S <= chunk_tokens_) return at::linear(xg, wg, bg);
  at::Tensor out = at::empty({x.size(0), S, wg.size(0)}, xg.options());
  for (int64_t s0 = 0; s0 < S; s0 += chunk_tokens_) {
    const int64_t s1 = std::min(S, s0 + chunk_tokens_);
    out.slice(1, s0, s1).copy_(at::linear(xg.slice(1, s0, s1), wg, bg));
  }
  return out;
}

at::Tensor WanDit::rms_norm(const at::Tensor& x, const at::Tensor& w) const {
  // WanRMSNorm: _norm(x.float()).type_as(x) * weight, over the whole width.
  const at::Tensor& wx = w.scalar_type() == x.scalar_type() ? w : w.to(x.scalar_type());
  if (x.scalar_type() == at::kFloat) {
    return x * at::rsqrt(x.pow(2).mean(-1, true) + cfg_.eps) * wx;
  }
  // Reduced precision: the fp32 statistics without an fp32 copy of x, and the
  // normalised value rounded to x's dtype by the multiply itself (3 passes, not 6).
  at::Tensor ss = at::linalg_vector_norm(x, 2, at::IntArrayRef{-1}, true, at::kFloat);  // [.., 1]
  at::Tensor factor = at::rsqrt(ss.square().div_(static_cast<double>(x.size(-1))).add_(cfg_.eps));
  at::Tensor n;
  if (x.is_cuda()) {
    n = at::empty_like(x);
    at::mul_out(n, x, factor);  // see Note [Fused mixed-dtype elementwise]
  } else {
    n = (x.to(at::kFloat) * factor).to(x.scalar_type());
  }
  return n.mul_(wx);
}

at::Tensor WanDit::attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const {
  // q [1, Lq, N, d], k/v [1, Lk, N, d] (run dtype) -> [1, Lq, N * d]
  at::Tensor o = compat::sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));
  return o.transpose(1, 2).reshape({q.size(0), q.size(1), q.size(2) * q.size(3)});
}

at::Tensor WanDit::block(int64_t i, const at::Tensor& x, const DitInputs& in) const {
  return block(i, x, in, block_weights(i));
}

at::Tensor WanDit::block(int64_t i, const at::Tensor& x, const DitInputs& in, const DitBlockWeights& w) const {
  (void)i;
  const at::ScalarType g = gemm_dtype(run_);
  const int64_t D = cfg_.dim, N = cfg_.num_heads, hd = cfg_.head_dim();
  const int64_t S = x.size(1), L = in.num_tokens;
  WAND_ASSERT(x.dim() == 3 && x.size(2) == D && S == in.seq_len, "dit block: x must be [1, seq_len, dim]");
  at::Tensor mod = w.modulation.to(at::kFloat).reshape({6, D});
  at::Tensor e0 = in.e0;  // [R, 6, D]
  auto chunk = [&](int64_t k, int64_t s0, int64_t s1) {
    return per_token(mod.select(0, k).unsqueeze(0) + e0.select(1, k), in, s0, s1);
  };
  // Note [Fused DiT block]: in the bf16 run mode on CUDA the elementwise work
  // between the GEMMs and the attention runs in the kernels of model/cuda
  // (Note [Fused DiT kernels]): LN1 + modulation in one pass; RMSNorm + RoPE
  // in place on each of q / k; "residual + next LayerNorm" in one kernel at
  // both transitions (self-attention output -> norm3, cross-attention output ->
  // FFN LN + modulation); FFN0 + bias + tanh-GELU as one cuBLASLt GEMM; the
  // gated FFN residual. The arithmetic is the unfused path's (the fused GELU
  // skips one bf16 rounding of the FFN hidden); per-token modulation rows
  // (ti2v) are indexed inside the kernels instead of expanded to [S, D].
  // WAND_FUSED=0 selects the unfused path (bench/dit compares both); CPU and
  // the fp32 / fp16 modes always take it.
  if (g == at::kBFloat16 && x.is_cuda() && fused::enabled() && fused::supports_dim(D) && hd % 2 == 0) {
    auto rows = [&](int64_t k) { return (mod.select(0, k).unsqueeze(0) + e0.select(1, k)).contiguous(); };  // [R, D]
    auto as_g = [&](const at::Tensor& t) { return (t.scalar_type() == g ? t : t.to(g)).contiguous(); };
    const at::Tensor& rot = in.row_of_token;  // undefined when R == 1
    const double eps = cfg_.eps;
    const at::Tensor x0 = x.contiguous();     // fp32, or bf16 for block 0 (LN output rounded to it)
    at::Tensor xf, c;
    // 1. self-attention.
    {
      at::Tensor ag = fused::ln_modulate(x0, rows(0), rows(1), rot, eps);  // [1, S, D] bf16
      at::Tensor q = fused::rms_norm_rope(linear(ag, w.sa_q_w, w.sa_q_b), as_g(w.sa_norm_q), in.rope, hd, eps, true);
      at::Tensor k = fused::rms_norm_rope(linear(ag, w.sa_k_w, w.sa_k_b), as_g(w.sa_norm_k), in.rope, hd, eps, true);
      at::Tensor v = linear(ag, w.sa_v_w, w.sa_v_b).view({1, S, N, hd});
      ag = at::Tensor();
      q = q.view({1, S, N, hd});
      k = k.view({1, S, N, hd});
      at::Tensor att;
      if (in.self_attention) {
        att = in.self_attention(q, k, v).reshape({1, S, N * hd});
      } else {
        if (S > L) {
          k = k.slice(1, 0, L);
          v = v.slice(1, 0, L);
        }
        att = attention(q, k, v);
      }
      q = k = v = at::Tensor();
      at::Tensor o = linear(att, w.sa_o_w, w.sa_o_b);
      att = at::Tensor();
      // x + o * gate into a new fp32 tensor (the caller's x is never modified) and norm3(x) in bf16.
      std::tie(xf, c) = fused::residual_ln_affine(x0, o, rows(2), rot, w.norm3_w.to(at::kFloat).contiguous(),
                                                  w.norm3_b.to(at::kFloat).contiguous(), eps, /*in_place=*/false);
    }
    // 2. cross-attention, then x += o and the FFN's LN + modulation in one pass.
    at::Tensor f;
    {
      at::Tensor ctx = in.context.to(g);
      const int64_t Lt = ctx.size(1);
      at::Tensor q = fused::rms_norm_rope(linear(c, w.ca_q_w, w.ca_q_b), as_g(w.ca_norm_q), {}, hd, eps, true);
      c = at::Tensor();
      at::Tensor k = fused::rms_norm_rope(at::linear(ctx, w.ca_k_w.to(g), w.ca_k_b.to(g)), as_g(w.ca_norm_k), {}, hd,
                                          eps, true);
      at::Tensor v = at::linear(ctx, w.ca_v_w.to(g), w.ca_v_b.to(g)).view({1, Lt, N, hd});
      at::Tensor o = linear(attention(q.view({1, S, N, hd}), k.view({1, Lt, N, hd}), v), w.ca_o_w, w.ca_o_b);
      q = k = v = at::Tensor();
      f = fused::residual_ln_modulate(xf, o, {}, rot, rows(3), rows(4), eps, /*in_place=*/true).second;
    }
    // 3. FFN in token chunks: GEMM + bias + GELU, GEMM, then x += y * gate in place.
    const int64_t step = chunk_tokens_ > 0 ? chunk_tokens_ : S;
    const at::Tensor w0 = as_g(w.ffn0_w), b0 = as_g(w.ffn0_b), w2 = w.ffn2_w.to(g), b2 = w.ffn2_b.to(g);
    const at::Tensor gate = rows(5);
    for (int64_t s0 = 0; s0 < S; s0 += step) {
      const int64_t s1 = std::min(S, s0 + step);
      at::Tensor h = fused::linear_gelu_tanh(f.slice(1, s0, s1), w0, b0);  // [1, s1 - s0, ffn_dim]
      at::Tensor y = at::linear(h, w2, b2);
      h = at::Tensor();
      fused::residual_add(xf.slice(1, s0, s1), y, gate, rot.defined() ? rot.slice(0, s0, s1) : at::Tensor(),
                          /*in_place=*/true);
    }
    return xf;
  }

  // 1. self-attention. Block 0 sees the run-dtype patch embedding: LN output is rounded to it.
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor a = at::layer_norm(xf, {D}, {}, {}, cfg_.eps);
  if (x.scalar_type() != at::kFloat) a = a.to(x.scalar_type()).to(at::kFloat);
  {
    // a = LN1(x) * (1 + scale) + shift, written straight in the GEMM dtype.
    at::Tensor ag = addcmul_as(chunk(0, 0, S), a, 1 + chunk(1, 0, S), g);
    a = at::Tensor();
    at::Tensor q = rms_norm(linear(ag, w.sa_q_w, w.sa_q_b), w.sa_norm_q).view({1, S, N, hd});
    at::Tensor k = rms_norm(linear(ag, w.sa_k_w, w.sa_k_b), w.sa_norm_k).view({1, S, N, hd});
    at::Tensor v = linear(ag, w.sa_v_w, w.sa_v_b).view({1, S, N, hd});
    ag = at::Tensor();
    q = rope_apply(q, in.rope, g);
    k = rope_apply(k, in.rope, g);
    at::Tensor att;
    if (in.self_attention) {  // e.g. Ulysses: the override sees the padding itself
      att = in.self_attention(q, k, v).reshape({1, S, N * hd});
    } else {
      if (S > L) {  // padded tokens are not keys (k_lens = seq_lens)
        k = k.slice(1, 0, L);
        v = v.slice(1, 0, L);
      }
      att = attention(q, k, v);
    }
    q = k = v = at::Tensor();
    at::Tensor o = linear(att, w.sa_o_w, w.sa_o_b);
    // fp32 from here on; a new tensor, so the caller's x is never modified.
    xf = xf.is_cuda() ? at::addcmul(xf, o, chunk(2, 0, S)) : xf + o.to(at::kFloat) * chunk(2, 0, S);
  }
  // 2. cross-attention (affine norm3, no modulation, no gate, no mask).
  {
    at::Tensor c = at::layer_norm(xf, {D}, w.norm3_w.to(at::kFloat), w.norm3_b.to(at::kFloat), cfg_.eps).to(g);
    at::Tensor ctx = in.context.to(g);
    const int64_t Lt = ctx.size(1);
    at::Tensor q = rms_norm(linear(c, w.ca_q_w, w.ca_q_b), w.ca_norm_q).view({1, S, N, hd});
    at::Tensor k = rms_norm(at::linear(ctx, w.ca_k_w.to(g), w.ca_k_b.to(g)), w.ca_norm_k).view({1, Lt, N, hd});
    at::Tensor v = at::linear(ctx, w.ca_v_w.to(g), w.ca_v_b.to(g)).view({1, Lt, N, hd});
    c = at::Tensor();
    at::Tensor o = linear(attention(q, k, v), w.ca_o_w, w.ca_o_b);
    if (xf.is_cuda()) {
      xf.add_(o);
    } else {
      xf.add_(o.to(at::kFloat));
    }
  }
  // 3. FFN, optionally in token chunks (the [S, ffn_dim] hidden is the largest activation).
  const int64_t step = chunk_tokens_ > 0 ? chunk_tokens_ : S;
  const at::Tensor w0 = w.ffn0_w.to(g), b0 = w.ffn0_b.to(g), w2 = w.ffn2_w.to(g), b2 = w.ffn2_b.to(g);
  for (int64_t s0 = 0; s0 < S; s0 += step) {
    const int64_t s1 = std::min(S, s0 + step);
    at::Tensor xs = xf.slice(1, s0, s1);
    at::Tensor ln = at::layer_norm(xs, {D}, {}, {}, cfg_.eps);
    at::Tensor f = addcmul_as(chunk(3, s0, s1), ln, 1 + chunk(4, s0, s1), g);
    ln = at::Tensor();
    at::Tensor h = at::linear(f, w0, b0);
    f = at::Tensor();
    at::gelu_(h, "tanh");
    at::Tensor y = at::linear(h, w2, b2);
    h = at::Tensor();
    add_gated_(xs, y, chunk(5, s0, s1));
  }
  return xf;
}

at::Tensor WanDit::head_tokens(const at::Tensor& x, const DitInputs& in) const {
  const int64_t D = cfg_.dim, S = x.size(1);
  at::Tensor hm = head_mod_.reshape({2, D});
  at::Tensor shift = per_token(hm.select(0, 0).unsqueeze(0) + in.e, in, 0, S);
  at::Tensor scale = per_token(hm.select(0, 1).unsqueeze(0) + in.e, in, 0, S);
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor h = at::layer_norm(xf, {D}, {}, {}, cfg_.eps) * (1 + scale) + shift;
  return at::linear(h, head_w_, head_b_);  // fp32 GEMM
}

at::Tensor WanDit::unpatchify(const at::Tensor& head_out, const DitInputs& in) const {
  const int64_t c = cfg_.out_dim;
  at::Tensor u = head_out.select(0, 0).slice(0, 0, in.num_tokens);
  u = u.reshape({in.grid_f, in.grid_h, in.grid_w, cfg_.patch_t, cfg_.patch_h, cfg_.patch_w, c});
  // 'fhwpqrc -> cfphqwr'
  u = u.permute({6, 0, 3, 1, 4, 2, 5});
  return u.reshape({c, in.grid_f * cfg_.patch_t, in.grid_h * cfg_.patch_h, in.grid_w * cfg_.patch_w});
}

BlockLoop WanDit::owned_blocks() const {
  return [this](const BlockBody& body) {
    for (int64_t i = 0; i < cfg_.num_layers; ++i) body(i, block_weights(i));
  };
}

at::Tensor WanDit::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                           const c10::optional<at::Tensor>& y) const {
  return forward(x, t, context, seq_len, y, owned_blocks());
}

at::Tensor WanDit::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                           const c10::optional<at::Tensor>& y, const BlockLoop& blocks) const {
  DitInputs in = embed(x, t, context, seq_len, y);
  at::Tensor h = in.tokens;
  blocks([&](int64_t i, const DitBlockWeights& w) { h = block(i, h, in, w); });
  return head(h, in);
}

std::pair<at::Tensor, at::Tensor> WanDit::forward_cfg(const at::Tensor& x, const at::Tensor& t,
                                                      const at::Tensor& context, const at::Tensor& context_null,
                                                      int64_t seq_len, const c10::optional<at::Tensor>& y) const {
  return forward_cfg(x, t, context, context_null, seq_len, y, owned_blocks());
}

std::pair<at::Tensor, at::Tensor> WanDit::forward_cfg(const at::Tensor& x, const at::Tensor& t,
                                                      const at::Tensor& context, const at::Tensor& context_null,
                                                      int64_t seq_len, const c10::optional<at::Tensor>& y,
                                                      const BlockLoop& blocks, BranchStash* stash) const {
  DitInputs in_c = embed(x, t, context, seq_len, y);
  DitInputs in_u = in_c;
  in_u.context = embed_text(context_null);
  at::Tensor hc = in_c.tokens, hu = in_u.tokens;
  bool stashed = false;  // hu is in the stash
  blocks([&](int64_t i, const DitBlockWeights& w) {
    hc = block(i, hc, in_c, w);
    if (stash == nullptr) {
      hu = block(i, hu, in_u, w);
      return;
    }
    stash->put(block(i, stashed ? stash->take() : hu, in_u, w));
    hu = at::Tensor();  // the device holds one stream between blocks
    stashed = true;
  });
  at::Tensor c = head(hc, in_c);
  if (stashed) hu = stash->take();
  return {c, head(hu, in_u)};
}

}  // namespace wand::model
