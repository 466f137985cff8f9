#include "model/fp8.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/Parallel.h>

#include <torch/version.h>

#include "common/error.h"

// at::kFloat8_e4m3fn exists from LibTorch 2.1 on; 1.13 has no fp8 dtype (the table below).
// Kept here rather than in common/torch_compat.h: that header is in every target's
// precompiled header, and fp8.cpp is its only user.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define WAND_TORCH_HAS_FLOAT8 1
#else
#define WAND_TORCH_HAS_FLOAT8 0
#endif

namespace wand::model {

namespace {

float from_bits(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

std::uint32_t to_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// The 256 values, built from the bit layout: a normal code moves its exponent and mantissa
// into an fp32's fields (exponent rebased from 7 to 127), a subnormal one is m x 2^-9.
std::array<float, 256> build_table() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const std::uint32_t sign = static_cast<std::uint32_t>(c & 0x80) << 24;
    const int e = (c >> 3) & 0xf, m = c & 7;
    float v;
    if (e == 0xf && m == 7) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (e == 0) {
      v = static_cast<float>(m) / 512.0f;  // exact
    } else {
      v = from_bits(static_cast<std::uint32_t>(e - 7 + 127) << 23 | static_cast<std::uint32_t>(m) << 20);
    }
    t[static_cast<std::size_t>(c)] = from_bits(to_bits(v) | sign);
  }
  return t;
}

const std::array<float, 256>& table() {
  static const std::array<float, 256> t = build_table();
  return t;
}

at::Tensor decode_cpu(const at::Tensor& codes) {
  const at::Tensor c = codes.contiguous();
  at::Tensor out = at::empty(c.sizes(), c.options().dtype(at::kFloat));
  const std::uint8_t* src = c.data_ptr<std::uint8_t>();
  float* dst = out.data_ptr<float>();
  const auto& t = table();
  at::parallel_for(0, c.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) dst[i] = t[src[i]];
  });
  return out;
}

}  // namespace

float fp8_e4m3fn_decode(std::uint8_t code) { return table()[code]; }

std::uint8_t fp8_e4m3fn_encode(float x) {
  const std::uint32_t bits = to_bits(x);
  const std::uint8_t sign = static_cast<std::uint8_t>((bits >> 24) & 0x80);
  if (std::isnan(x)) return 0x7f;
  const float a = std::fabs(x);
  if (a >= kFp8E4M3Max) return sign | 0x7e;  // saturate (no infinities in e4m3fn)
  if (a < 1.0f / 64.0f) {                    // below the smallest normal 2^-6: m x 2^-9
    // a x 512 is exact; nearbyint rounds ties to even; m == 8 is code 0x08 = 2^-6.
    const int m = static_cast<int>(std::nearbyint(a * 512.0f));
    return sign | static_cast<std::uint8_t>(m);
  }
  // Normal: drop 20 of fp32's 23 mantissa bits, round to nearest even (a carry moves into the
  // exponent), then rebase the exponent from 127 to 7: (e32 << 3 | m3) - (120 << 3).
  const std::uint32_t ab = bits & 0x7fffffffu;
  const std::uint32_t r = (ab + 0x7ffffu + ((ab >> 20) & 1u)) >> 20;
  const std::uint32_t code = r - (120u << 3);
  return sign | static_cast<std::uint8_t>(code > 0x7eu ? 0x7eu : code);
}

at::Tensor fp8_e4m3fn_to_float(const at::Tensor& codes) {
  if (codes.scalar_type() != at::kByte) {
    throw Error(ErrorCode::kInternal, std::string("fp8 decode: codes must be bytes, got ") + c10::toString(codes.scalar_type()));
  }
#if WAND_TORCH_HAS_FLOAT8
  return codes.view(at::kFloat8_e4m3fn).to(at::kFloat);
#else
  if (codes.is_cpu()) return decode_cpu(codes);
  // No fp8 dtype and not on the CPU (not a configuration wand builds): the table on the device.
  const auto& t = table();
  const at::Tensor lut = at::from_blob(const_cast<float*>(t.data()), {256}, at::kFloat).to(codes.device());
  return lut.index_select(0, codes.reshape({-1}).to(at::kLong)).reshape(codes.sizes());
#endif
}

at::Tensor fp8_dequantize(const at::Tensor& codes, const at::Tensor& scale, at::ScalarType out) {
  const bool per_tensor = scale.numel() == 1;
  if (!per_tensor && (codes.dim() < 1 || scale.numel() != codes.size(0))) {
    throw Error(ErrorCode::kModelFormat, "fp8 dequantize: " + std::to_string(scale.numel()) +
                                             " scales for a weight of " + std::to_string(codes.dim() ? codes.size(0) : 0) +
                                             " rows (expected 1 or one a row)");
  }
  at::Tensor s = scale.to(at::kFloat);
  if (per_tensor) {
    s = s.reshape({});
  } else {
    std::vector<std::int64_t> shape(static_cast<std::size_t>(codes.dim()), 1);
    shape[0] = codes.size(0);
    s = s.reshape(shape);
  }
  const std::int64_t rows = codes.dim() ? codes.size(0) : 1;
  if (codes.numel() <= kDequantChunkElems || codes.dim() == 0 || rows <= 1) {
    return (fp8_e4m3fn_to_float(codes) * s).to(out);
  }
  at::Tensor result = at::empty(codes.sizes(), codes.options().dtype(out));
  const std::int64_t per_row = codes.numel() / rows;
  const std::int64_t step = std::max<std::int64_t>(1, kDequantChunkElems / std::max<std::int64_t>(per_row, 1));
  for (std::int64_t r0 = 0; r0 < rows; r0 += step) {
    const std::int64_t n = std::min(step, rows - r0);
    const at::Tensor sc = per_tensor ? s : s.narrow(0, r0, n);
    result.narrow(0, r0, n).copy_(fp8_e4m3fn_to_float(codes.narrow(0, r0, n)) * sc);
  }
  return result;
}

Fp8Tensor quantize_fp8_e4m3fn(const at::Tensor& w, Fp8Scaling scaling) {
  if (w.dim() != 2) throw Error(ErrorCode::kInternal, "fp8 quantize: expected a 2-D weight, got " + std::to_string(w.dim()) + "-D");
  const at::Tensor x = w.to(at::kCPU).to(at::kFloat).contiguous();
  at::Tensor amax = scaling == Fp8Scaling::kRow ? x.abs().amax({1}, /*keepdim=*/true) : x.abs().max().reshape({});
  // A zero (or non-finite) absmax gets scale 1: its codes are all zero (or saturate).
  at::Tensor scale = at::where(amax > 0, amax / kFp8E4M3Max, at::ones_like(amax)).contiguous();
  return Fp8Tensor{fp8_e4m3fn_encode(x / scale), scale};
}

at::Tensor fp8_e4m3fn_encode(const at::Tensor& x) {
  const at::Tensor v = x.to(at::kCPU).to(at::kFloat).contiguous();
  at::Tensor codes = at::empty(v.sizes(), at::TensorOptions().dtype(at::kByte));
  const float* src = v.data_ptr<float>();
  std::uint8_t* dst = codes.data_ptr<std::uint8_t>();
  at::parallel_for(0, v.numel(), 1 << 14, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) dst[i] = fp8_e4m3fn_encode(src[i]);
  });
  return codes;
}

}  // namespace wand::model
