// fp8_e4m3fn weights: the codec behind the weight store's fp8 storage (Note [fp8 stored
// dtype], model/weight_storage.h), on raw bytes (at::kByte) so it works on LibTorch 1.13,
// which has no fp8 dtype, and 2.x alike.
//
//   float v = fp8_e4m3fn_decode(0x38);                       // 1.0f
//   std::uint8_t c = fp8_e4m3fn_encode(0.3f);                // nearest code, ties to even
//   Fp8Tensor q = quantize_fp8_e4m3fn(w, Fp8Scaling::kRow);   // codes [R, C] + scales [R, 1]
//   at::Tensor b = fp8_dequantize(q.codes, q.scale, at::kBFloat16);  // CPU or CUDA
//
// The format (OCP fp8 E4M3, "fn": finite, with NaN): 1 sign bit, 4 exponent bits (bias 7),
// 3 mantissa bits; exponent 0 is subnormal (m x 2^-9); no infinities; 0x7f and 0xff are NaN;
// the largest finite value is 448 (0x7e).
//
// Note [fp8 dequantization]: a stored fp8 weight means  w = decode(code) x scale  (ComfyUI's
// fp8_scaled files: "<layer>.scale_weight" multiplies the dequantized weight, comfy/ops.py).
// wand decodes to fp32 (exact: every e4m3 value is an fp32 and a bf16), multiplies by the
// fp32 scale (one rounding) and rounds to the run dtype (a second one). ComfyUI multiplies in
// the run dtype after rounding the scale to it; wand's product is at least as close. The same
// function serves the weight store's streamed blocks (on the card, right after the
// transfer) and the resident path (CheckpointDir::load), so a streamed fp8 block equals the
// resident one bitwise. On CUDA the decode uses LibTorch's own fp8 cast (2.1+), elsewhere
// a 256-entry table; both are exact, so they agree bit for bit. Large tensors are done in
// row chunks so the fp32 temporary stays small (kDequantChunkElems).
//
// Note [fp8 scale granularity]: wand's own quantizer (quantize_fp8_e4m3fn: a bf16/fp32
// model repacked with weights_dtype "fp8", and wand-make-model --dtype fp8) takes absmax
// scales, scale = max|w| / 448 over a row (per output channel, kRow) or the whole tensor
// (kTensor, what ComfyUI's files carry), codes = round-to-nearest-even(w / scale). Measured
// on the tiny model (bench/results/fp8_tiny.md, CPU), relative L2 against bf16: one expert
// forward 0.0130 per tensor, 0.0133 per row; the tiny video's latents 0.0053 and 0.0063. Per
// tensor is marginally ahead there, by less than the noise of where the roundings fall: fp8
// is a floating-point format, its relative step does not depend on the scale, and the random
// weights have rows of one magnitude. The scale matters only for rows far below the tensor's
// largest (more than ~2^9, where a per-tensor scale pushes them into the subnormal range and
// their relative step grows); with one row x50 the other rows' error is 0.0259 per row and
// 0.0265 per tensor (fp8_test). wand keeps per row as its default for that robustness, at 4
// bytes a row (20 KiB of a 26 MiB A14B attention weight); the two are within noise of each
// other on every case measured, so the lead may switch the default (WeightStoreOptions::
// fp8_scaling, and the planner's scale count in scheduler/plan/model_shape.cpp) if the GPU
// measurement (bench/exec/fp8.sh: fp8 vs fp8-tensor) says otherwise. fp8 files keep theirs.
// Free functions; any thread.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "model/weight_storage.h"

namespace wand::model {

constexpr float kFp8E4M3Max = 448.0f;
constexpr std::int64_t kDequantChunkElems = 8ll << 20;

float fp8_e4m3fn_decode(std::uint8_t code);
// Round to nearest, ties to even; |x| beyond 448 saturates to +-448 (0x7e / 0xfe), NaN -> 0x7f.
std::uint8_t fp8_e4m3fn_encode(float x);

// fp8_e4m3fn_encode of every element (CPU, any float dtype) -> kByte codes, same shape.
at::Tensor fp8_e4m3fn_encode(const at::Tensor& x);

// codes (kByte, any shape, CPU or CUDA) -> fp32 values.
at::Tensor fp8_e4m3fn_to_float(const at::Tensor& codes);

// decode(codes) x scale, rounded to `out` (Note [fp8 dequantization]). scale: fp32, 0-dim or
// one element (per tensor), or [R] / [R, 1] for codes [R, ...] (per row); on codes' device.
at::Tensor fp8_dequantize(const at::Tensor& codes, const at::Tensor& scale, at::ScalarType out);

struct Fp8Tensor {
  at::Tensor codes;  // kByte, the weight's shape
  at::Tensor scale;  // kFloat: [] (kTensor) or [R, 1] (kRow)
};

// Quantizes a 2-D weight (any float dtype, CPU) with absmax scales (Note [fp8 scale granularity]).
Fp8Tensor quantize_fp8_e4m3fn(const at::Tensor& w, Fp8Scaling scaling);

}  // namespace wand::model
