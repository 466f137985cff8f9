// 3-D rotary position embedding of the Wan DiT (wan.modules.model.rope_params / rope_apply).
//
//   at::Tensor freqs = rope_freqs(128);                       // [1024, 64, 2] float64 (cos, sin)
//   at::Tensor tab = rope_token_table(freqs, 21, 30, 52, seq_len, at::kFloat);  // [S, 64, 2]
//   at::Tensor q2 = rope_apply(q, tab, at::kBFloat16);        // q [B, S, N, d] -> [B, S, N, d]
//
// Note [RoPE layout]: a head vector of d values is d/2 complex numbers formed
// from ADJACENT pairs (x[2m], x[2m+1]) = (re, im). The d/2 complex columns are
// split [c - 2*(c/3), c/3, c/3] (c = d/2; 22/21/21 for d = 128) into frame,
// row and column parts; the table parts are rope_params(1024, d - 4*(d/6)),
// rope_params(1024, 2*(d/6)) twice, theta 10000, built in float64. Tokens at
// index >= F*H*W (sequence padding) are left unrotated (cos 1, sin 0).
// Free functions, no state: any thread.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

namespace wand::model {

constexpr int64_t kRopeTableLen = 1024;
constexpr double kRopeTheta = 10000.0;

// rope_params(len, n): [len, n/2, 2] float64, (cos, sin) of p / theta^(2j/n).
at::Tensor rope_params(int64_t len, int64_t n, double theta = kRopeTheta);
// The model's table: the three parts concatenated, [len, head_dim/2, 2] float64.
at::Tensor rope_freqs(int64_t head_dim, int64_t len = kRopeTableLen, double theta = kRopeTheta);
// Per-token multipliers for a (F, H, W) token grid padded to seq_len rows:
// [seq_len, head_dim/2, 2] in `dtype` (float64 for the exact path).
at::Tensor rope_token_table(const at::Tensor& freqs, int64_t grid_f, int64_t grid_h, int64_t grid_w,
                            int64_t seq_len, at::ScalarType dtype);
// Rotates x [..., S, N, d] with a token table [S, d/2, 2]; the product is
// computed in the table's dtype and returned in out_dtype.
at::Tensor rope_apply(const at::Tensor& x, const at::Tensor& table, at::ScalarType out_dtype);

}  // namespace wand::model
