// Fused elementwise kernels of the DiT block; see model/cuda/dit_kernels.h and
// Note [Fused DiT kernels]. Plain CUDA (no LibTorch): builds wherever nvcc is.
#include "model/cuda/dit_kernels.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace wand::model::kernels {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kMaxThreads = 512;

// Note [Row cache layout]: each thread handles chunks c = tid, tid + blockDim,
// ... of V consecutive elements and only ever reads back its own chunks, so the
// shared-memory cache may use any layout: element k of chunk c lives at
// k * nchunks + c, which makes consecutive threads touch consecutive words
// (no bank conflicts) for every V.
__device__ __forceinline__ int64_t cache_index(int64_t c, int k, int64_t nchunks) { return k * nchunks + c; }

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// V values from p (V == 8: one 16-byte load of bf16 / two of fp32; p 16-byte aligned).
template <int V>
__device__ __forceinline__ void load_v(const float* p, float (&r)[V]) {
  if constexpr (V == 8) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    r[0] = a.x, r[1] = a.y, r[2] = a.z, r[3] = a.w;
    r[4] = b.x, r[5] = b.y, r[6] = b.z, r[7] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) r[k] = p[k];
  }
}

template <int V>
__device__ __forceinline__ void load_v(const bf16* p, float (&r)[V]) {
  if constexpr (V == 8) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __bfloat1622float2(h[k]);
      r[2 * k] = f.x;
      r[2 * k + 1] = f.y;
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) r[k] = __bfloat162float(p[k]);
  }
}

template <int V>
__device__ __forceinline__ void store_v(float* p, const float (&r)[V]) {
  if constexpr (V == 8) {
    reinterpret_cast<float4*>(p)[0] = make_float4(r[0], r[1], r[2], r[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(r[4], r[5], r[6], r[7]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = r[k];
  }
}

// Rounds to bf16 (round to nearest even) and stores.
template <int V>
__device__ __forceinline__ void store_v(bf16* p, const float (&r)[V]) {
  if constexpr (V == 8) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = __floats2bfloat162_rn(r[2 * k], r[2 * k + 1]);
    *reinterpret_cast<uint4*>(p) = u;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = __float2bfloat16_rn(r[k]);
  }
}

// Sum over the CTA (blockDim.x a multiple of 32, at most 1024); every thread
// gets the total. `red` holds 32 floats; the leading barrier lets a previous
// call's readers finish before it is overwritten.
__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  const int nwarps = blockDim.x >> 5;
  float t = lane < nwarps ? red[lane] : 0.f;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) t += __shfl_xor_sync(0xffffffffu, t, off);
  return t;
}

// One CTA per token row; see RowNormArgs.
template <typename TX, int V, RowNorm kNorm, bool kResidual>
__global__ void __launch_bounds__(kMaxThreads) row_norm_kernel(const RowNormArgs a) {
  extern __shared__ float cache[];  // [dim] fp32 (kNorm != kNone)
  __shared__ float red[32];
  const int64_t s = blockIdx.x;
  const int64_t D = a.dim;
  const int64_t nchunks = D / V;
  const int64_t r = a.row_of_token != nullptr ? a.row_of_token[s] : 0;
  const TX* x = static_cast<const TX*>(a.x) + s * D;
  // Residual operands (null unless kResidual; no arithmetic on null pointers).
  const bf16* o = kResidual ? reinterpret_cast<const bf16*>(a.o) + s * D : nullptr;
  const float* gate = kResidual && a.gate != nullptr ? a.gate + r * D : nullptr;
  float* x_out = kResidual ? a.x_out + s * D : nullptr;

  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < nchunks; c += blockDim.x) {
    const int64_t j = c * V;
    float v[V];
    load_v<V>(x + j, v);
    if constexpr (kResidual) {
      float ov[V];
      load_v<V>(o + j, ov);
      if (gate != nullptr) {
        float g[V];
        load_v<V>(gate + j, g);
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = fmaf(ov[k], g[k], v[k]);  // x + o * gate (addcmul)
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = v[k] + ov[k];
      }
      store_v<V>(x_out + j, v);
    }
    if constexpr (kNorm != RowNorm::kNone) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        cache[cache_index(c, k, nchunks)] = v[k];
        sum += v[k];
      }
    }
  }
  if constexpr (kNorm != RowNorm::kNone) {
    const float mean = block_sum(sum, red) / static_cast<float>(D);
    float sq = 0.f;
    for (int64_t c = threadIdx.x; c < nchunks; c += blockDim.x) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = cache[cache_index(c, k, nchunks)] - mean;
        sq += d * d;
      }
    }
    const float var = block_sum(sq, red) / static_cast<float>(D);
    const float rstd = rsqrtf(var + a.eps);
    const float* shift = kNorm == RowNorm::kModulate ? a.shift + r * D : nullptr;
    const float* scale = kNorm == RowNorm::kModulate ? a.scale + r * D : nullptr;
    bf16* out = reinterpret_cast<bf16*>(a.out) + s * D;
    for (int64_t c = threadIdx.x; c < nchunks; c += blockDim.x) {
      const int64_t j = c * V;
      float y[V];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        y[k] = (cache[cache_index(c, k, nchunks)] - mean) * rstd;
        if (a.round_ln) y[k] = round_bf16(y[k]);
      }
      float p[V], q[V];
      if constexpr (kNorm == RowNorm::kModulate) {
        load_v<V>(shift + j, p);
        load_v<V>(scale + j, q);
#pragma unroll
        for (int k = 0; k < V; ++k) y[k] = fmaf(y[k], 1.f + q[k], p[k]);  // shift + y * (1 + scale)
      } else {
        load_v<V>(a.weight + j, p);
        load_v<V>(a.bias + j, q);
#pragma unroll
        for (int k = 0; k < V; ++k) y[k] = fmaf(y[k], p[k], q[k]);  // y * w + b
      }
      store_v<V>(out + j, y);
    }
  }
}

// One CTA per token row; see RmsNormRopeArgs. V is 8 (vectorised) or 2 (one pair).
template <int V, bool kRope>
__global__ void __launch_bounds__(kMaxThreads) rms_norm_rope_kernel(const RmsNormRopeArgs a) {
  extern __shared__ float cache[];  // [dim] fp32
  __shared__ float red[32];
  const int64_t s = blockIdx.x;
  const int64_t D = a.dim;
  const int64_t nchunks = D / V;
  const bf16* x = reinterpret_cast<const bf16*>(a.x) + s * D;
  const bf16* w = reinterpret_cast<const bf16*>(a.weight);
  bf16* out = reinterpret_cast<bf16*>(a.out) + s * D;

  float sq = 0.f;
  for (int64_t c = threadIdx.x; c < nchunks; c += blockDim.x) {
    float v[V];
    load_v<V>(x + c * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      cache[cache_index(c, k, nchunks)] = v[k];
      sq += v[k] * v[k];
    }
  }
  // Every load of this row is done once block_sum returns: in-place output is safe.
  const float factor = rsqrtf(block_sum(sq, red) / static_cast<float>(D) + a.eps);
  const int64_t half = a.head_dim / 2;
  const float* tab = kRope ? a.table + s * half * 2 : nullptr;
  for (int64_t c = threadIdx.x; c < nchunks; c += blockDim.x) {
    const int64_t j = c * V;
    float wv[V], n[V];
    load_v<V>(w + j, wv);
#pragma unroll
    for (int k = 0; k < V; ++k) n[k] = round_bf16(round_bf16(cache[cache_index(c, k, nchunks)] * factor) * wv[k]);
    if constexpr (kRope) {
#pragma unroll
      for (int p = 0; p < V / 2; ++p) {
        const int64_t m = ((j + 2 * p) % a.head_dim) / 2;  // pair index inside the head
        const float2 cs = *reinterpret_cast<const float2*>(tab + 2 * m);
        const float re = n[2 * p], im = n[2 * p + 1];
        n[2 * p] = re * cs.x - im * cs.y;
        n[2 * p + 1] = re * cs.y + im * cs.x;
      }
    }
    store_v<V>(out + j, n);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Threads per CTA: a multiple of 32, at most kMaxThreads, with the chunks spread evenly.
unsigned threads_for(int64_t nchunks) {
  const int64_t per = (nchunks + kMaxThreads - 1) / kMaxThreads;  // chunks per thread
  int64_t t = (nchunks + per - 1) / per;
  t = (t + 31) / 32 * 32;
  return static_cast<unsigned>(t < 32 ? 32 : t);
}

template <typename TX, int V, RowNorm kNorm>
int launch_row_norm_t(const RowNormArgs& a, cudaStream_t stream) {
  const unsigned threads = threads_for(a.dim / V);
  const size_t smem = kNorm == RowNorm::kNone ? 0 : static_cast<size_t>(a.dim) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(a.rows));
  if (a.o != nullptr) {
    row_norm_kernel<TX, V, kNorm, true><<<grid, threads, smem, stream>>>(a);
  } else {
    row_norm_kernel<TX, V, kNorm, false><<<grid, threads, smem, stream>>>(a);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename TX, int V>
int dispatch_norm(const RowNormArgs& a, cudaStream_t stream) {
  switch (a.norm) {
    case RowNorm::kNone: return launch_row_norm_t<TX, V, RowNorm::kNone>(a, stream);
    case RowNorm::kModulate: return launch_row_norm_t<TX, V, RowNorm::kModulate>(a, stream);
    case RowNorm::kAffine: return launch_row_norm_t<TX, V, RowNorm::kAffine>(a, stream);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace

int launch_row_norm(const RowNormArgs& a, cudaStream_t stream) {
  const int bad = static_cast<int>(cudaErrorInvalidValue);
  if (a.rows < 0 || a.rows > 0x7fffffff || a.dim <= 0 || a.dim > kMaxDim || a.x == nullptr) return bad;
  const bool residual = a.o != nullptr;
  if (residual && a.x_out == nullptr) return bad;
  if (!residual && a.norm == RowNorm::kNone) return bad;  // nothing to do
  if (residual && a.x_bf16 && a.x_out == a.x) return bad;  // in place needs an fp32 x
  if (a.norm != RowNorm::kNone && a.out == nullptr) return bad;
  if (a.norm == RowNorm::kModulate && (a.shift == nullptr || a.scale == nullptr)) return bad;
  if (a.norm == RowNorm::kAffine && (a.weight == nullptr || a.bias == nullptr)) return bad;
  if (a.rows == 0) return 0;
  const void* ptrs[] = {a.x, a.o, a.gate, a.x_out, a.shift, a.scale, a.weight, a.bias, a.out};
  bool vec = a.dim % 8 == 0;
  for (const void* p : ptrs) vec = vec && (p == nullptr || aligned16(p));
  if (a.x_bf16) return vec ? dispatch_norm<bf16, 8>(a, stream) : dispatch_norm<bf16, 1>(a, stream);
  return vec ? dispatch_norm<float, 8>(a, stream) : dispatch_norm<float, 1>(a, stream);
}

int launch_rms_norm_rope(const RmsNormRopeArgs& a, cudaStream_t stream) {
  const int bad = static_cast<int>(cudaErrorInvalidValue);
  if (a.rows < 0 || a.rows > 0x7fffffff || a.dim <= 0 || a.dim > kMaxDim || a.dim % 2 != 0) return bad;
  if (a.x == nullptr || a.weight == nullptr || a.out == nullptr) return bad;
  const bool rope = a.table != nullptr;
  if (rope && (a.head_dim <= 0 || a.head_dim % 2 != 0 || a.dim % a.head_dim != 0)) return bad;
  if (rope && (reinterpret_cast<uintptr_t>(a.table) & 7u) != 0) return bad;  // float2 loads
  if (a.rows == 0) return 0;
  const bool vec = a.dim % 8 == 0 && aligned16(a.x) && aligned16(a.weight) && aligned16(a.out);
  const size_t smem = static_cast<size_t>(a.dim) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(a.rows));
  if (vec) {
    const unsigned threads = threads_for(a.dim / 8);
    if (rope) {
      rms_norm_rope_kernel<8, true><<<grid, threads, smem, stream>>>(a);
    } else {
      rms_norm_rope_kernel<8, false><<<grid, threads, smem, stream>>>(a);
    }
  } else {
    const unsigned threads = threads_for(a.dim / 2);
    if (rope) {
      rms_norm_rope_kernel<2, true><<<grid, threads, smem, stream>>>(a);
    } else {
      rms_norm_rope_kernel<2, false><<<grid, threads, smem, stream>>>(a);
    }
  }
  return static_cast<int>(cudaGetLastError());
}

const char* error_string(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

}  // namespace wand::model::kernels
