// Fused elementwise CUDA kernels of the DiT block (bf16 run mode): raw-pointer
// launchers, no LibTorch. One CTA per token row; fp32 statistics.
//
//   wand::model::kernels::RowNormArgs a;
//   a.x = x_ptr; a.x_bf16 = false; a.rows = S; a.dim = D;      // x [S, D] fp32
//   a.norm = kernels::RowNorm::kModulate;                       // LN, then * (1 + scale) + shift
//   a.shift = shift_rows; a.scale = scale_rows;                 // [R, D] fp32
//   a.row_of_token = nullptr;                                   // R == 1
//   a.out = out_ptr;                                            // [S, D] bf16
//   int err = kernels::launch_row_norm(a, stream);              // cudaError_t value, 0 = success
//
// Everything is launched on the caller's stream and is asynchronous; the
// launchers only check arguments and report launch errors. Pointers must stay
// valid until the stream reaches the kernel. Rows are contiguous ([rows, dim],
// row stride dim). In-place use (x_out == x, out == x for rms_norm_rope) is
// allowed: each CTA reads its whole row before it writes any of it.
//
// Note [Fused DiT kernels]: the numerics follow WanDit::block's unfused path
// op for op (Note [DiT precision islands]): every intermediate that the
// unfused path rounds to bf16 is rounded here too (__float2bfloat16_rn, the
// round-to-nearest-even of c10::BFloat16), everything else stays fp32; only
// the order of the fp32 reductions differs (tree sums instead of Welford), a
// few ulp of fp32. Rows are cached as fp32 in dynamic shared memory (dim * 4
// bytes; dim <= kMaxDim keeps it under the default 48 KiB), so x is read from
// global memory once. Loads and stores are 8 elements wide (16 bytes of bf16,
// two float4 of fp32) when dim % 8 == 0 and every pointer is 16-byte aligned;
// otherwise element-wise (pairs for RoPE).
//
// Stateless; any thread, any stream.
#pragma once

#include <cstdint>

// The CUDA runtime's stream handle, declared without the CUDA headers (the same
// typedef as driver_types.h; repeating it is legal C++).
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace wand::model::kernels {

// Largest row width the kernels take: the fp32 row cache (40 KiB) plus the
// reduction scratch stay under the 48 KiB of shared memory a CTA gets without opt-in.
constexpr int64_t kMaxDim = 10240;

enum class RowNorm : int {
  kNone = 0,      // residual update only (no normalised output)
  kModulate = 1,  // LayerNorm without affine, then * (1 + scale[r]) + shift[r]
  kAffine = 2,    // LayerNorm with weight / bias
};

// One kernel for "LayerNorm (+ modulation | affine)" and "residual + LayerNorm":
//   v      = residual ? x + o * gate[r] : x          (fp32; gate == nullptr means 1)
//   x_out  = v                                       (when residual)
//   y      = (v - mean(v)) * rsqrt(var(v) + eps)     (fp32 statistics, population variance)
//   y      = bf16(y)                                 (when round_ln: block 0's bf16 input)
//   out    = bf16(shift[r] + y * (1 + scale[r]))     (kModulate) | bf16(y * w + b) (kAffine)
// with r = row_of_token ? row_of_token[s] : 0 for token row s.
struct RowNormArgs {
  const void* x = nullptr;              // [rows, dim] fp32, or bf16 when x_bf16
  bool x_bf16 = false;
  // Residual update (o != nullptr): x_out = x + o * gate. x_out may equal x (fp32 only).
  const uint16_t* o = nullptr;          // [rows, dim] bf16 (raw bits)
  const float* gate = nullptr;          // [R, dim] fp32 or nullptr (gate 1)
  float* x_out = nullptr;               // [rows, dim] fp32; required when o != nullptr
  const int64_t* row_of_token = nullptr;  // [rows] row of gate / shift / scale; nullptr: row 0
  RowNorm norm = RowNorm::kNone;
  bool round_ln = false;                // round the normalised value to bf16 before modulating
  const float* shift = nullptr;         // [R, dim] (kModulate)
  const float* scale = nullptr;         // [R, dim] (kModulate; the kernel adds the 1)
  const float* weight = nullptr;        // [dim] (kAffine)
  const float* bias = nullptr;          // [dim] (kAffine)
  uint16_t* out = nullptr;              // [rows, dim] bf16; required unless kNone
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-6f;
};

// WanRMSNorm over the whole row, optionally followed by RoPE:
//   n   = bf16(bf16(x * rsqrt(mean(x^2) + eps)) * w)
//   out = n                                                         (table == nullptr)
//   out = bf16(n_pair (complex) * (cos, sin)[s, (j % head_dim) / 2]) (RoPE, fp32 product)
// Pairs (x[2m], x[2m+1]) are complex numbers (Note [RoPE layout]); the table is
// [rows, head_dim / 2, 2] fp32 (cos, sin), identity rows for sequence padding.
struct RmsNormRopeArgs {
  const uint16_t* x = nullptr;     // [rows, dim] bf16
  const uint16_t* weight = nullptr;  // [dim] bf16
  const float* table = nullptr;    // [rows, head_dim / 2, 2] fp32, or nullptr (no RoPE)
  int64_t head_dim = 0;            // even, divides dim (RoPE only)
  uint16_t* out = nullptr;         // [rows, dim] bf16; may equal x
  int64_t rows = 0;
  int64_t dim = 0;                 // even
  float eps = 1e-6f;
};

// Return a cudaError_t value (0 = cudaSuccess); cudaErrorInvalidValue (1) for bad arguments.
int launch_row_norm(const RowNormArgs& a, cudaStream_t stream);
int launch_rms_norm_rope(const RmsNormRopeArgs& a, cudaStream_t stream);
// The CUDA runtime's text for an error value returned above.
const char* error_string(int err);

}  // namespace wand::model::kernels
