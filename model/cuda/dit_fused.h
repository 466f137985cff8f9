// The fused elementwise kernels of the DiT block (model/cuda/dit_kernels.h) on
// at::Tensor: what WanDit::block calls in the bf16 run mode on CUDA.
//
//   if (fused::enabled() && fused::supports(x, D)) {
//     at::Tensor a = fused::ln_modulate(x, shift, scale, in.row_of_token, eps);   // [1, S, D] bf16
//     at::Tensor q = fused::rms_norm_rope(linear(a, wq, bq), norm_q, in.rope, hd, eps);
//     auto [x1, c] = fused::residual_ln_affine(x, o, gate, in.row_of_token, w3, b3, eps, false);
//     at::Tensor h = fused::linear_gelu_tanh(f, w0, b0);                           // FFN0 + GELU
//   }
//
// Shapes: token tensors are [..., S, D] contiguous (S = product of the leading
// dims); per-timestep rows (shift, scale, gate) are [R, D] fp32, picked per
// token by row_of_token ([S] int64 with values < R; undefined when R == 1).
// Dtypes: x fp32 (the residual stream) or bf16 (block 0's input); o, q, k bf16;
// outputs bf16 except the residual stream (fp32). Every function checks its
// arguments and throws wand::Error(kInternal) naming the problem (they are
// internal calls of the block), kCuda when a launch fails; kernels run on the
// current CUDA stream of x's device (asynchronous).
//
// Built everywhere: the argument checks and linear_gelu_tanh are plain
// LibTorch; the launches go through model/cuda/dit_fused_cuda.cpp, compiled
// only against a CUDA LibTorch with nvcc present (WAND_TORCH_CUDA and
// WAND_HAVE_CUDA). Elsewhere available() is false and a launch throws.
// Free functions; the only state is the on/off switch (atomic); any thread.
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

namespace wand::model::fused {

// Built with the CUDA kernels.
bool available();
// available() and switched on: by set_enabled() when called, else by the
// WAND_FUSED environment variable (not "0"; read once, at the first call).
bool enabled();
// Overrides WAND_FUSED for the whole process (tests and bench/dit compare both
// paths in one run); takes effect for blocks that start afterwards.
void set_enabled(bool on);
// Whether the kernels take rows of width `dim` (1 <= dim <= kernels::kMaxDim).
bool supports_dim(int64_t dim);

// bf16(LN(x) * (1 + scale[r]) + shift[r]), LN without affine over the last dim
// (fp32 statistics). A bf16 x has its LN output rounded to bf16 first (block 0).
// (The residual functions below normalise the fp32 x_new: no such rounding.)
at::Tensor ln_modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale,
                       const at::Tensor& row_of_token, double eps);
// bf16(LN(x) * w + b); x fp32, w / b [D] fp32.
at::Tensor ln_affine(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps);

// x_new = x + o * gate[r] (fp32; gate undefined = 1), written into x itself when
// in_place (x must then be fp32), else into a new tensor. Returns x_new.
at::Tensor residual_add(const at::Tensor& x, const at::Tensor& o, const at::Tensor& gate,
                        const at::Tensor& row_of_token, bool in_place);
// The same, and the next LayerNorm of x_new in the same kernel: returns
// (x_new fp32, bf16(LN(x_new) * (1 + scale[r]) + shift[r])).
std::pair<at::Tensor, at::Tensor> residual_ln_modulate(const at::Tensor& x, const at::Tensor& o,
                                                       const at::Tensor& gate, const at::Tensor& row_of_token,
                                                       const at::Tensor& shift, const at::Tensor& scale, double eps,
                                                       bool in_place);
// (x_new fp32, bf16(LN(x_new) * w + b)).
std::pair<at::Tensor, at::Tensor> residual_ln_affine(const at::Tensor& x, const at::Tensor& o,
                                                     const at::Tensor& gate, const at::Tensor& row_of_token,
                                                     const at::Tensor& w, const at::Tensor& b, double eps,
                                                     bool in_place);

// WanRMSNorm over the last dim of a bf16 x [..., S, D] (weight [D] bf16), then,
// when `table` is defined, RoPE with the per-token table [S, head_dim/2, 2] fp32
// (adjacent pairs, Note [RoPE layout]). Written into x itself when in_place.
at::Tensor rms_norm_rope(const at::Tensor& x, const at::Tensor& w, const at::Tensor& table, int64_t head_dim,
                         double eps, bool in_place);

// gelu_tanh(x @ w^T + b) for bf16 x [..., K], w [N, K], b [N] -> [..., N]: one
// at::_addmm_activation (cuBLASLt GELU_BIAS epilogue on CUDA, the GELU applied
// to the fp32 accumulator before the single rounding).
at::Tensor linear_gelu_tanh(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

}  // namespace wand::model::fused
