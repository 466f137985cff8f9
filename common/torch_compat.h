// The one place that guards LibTorch API differences between Debian's 1.13
// (CPU) and pip's 2.x (CUDA). Include this instead of <torch/torch.h>.
//
//   wand::compat::sdpa(q, k, v)            // [B, N, L, d] -> [B, N, L, d]
//   if (wand::compat::kHasSdpa) ...
//   wand::compat::set_sdpa_backend("cudnn");   // which CUDA SDPA kernel LibTorch may use
//   std::string k = wand::compat::sdpa_backend_for(q, k, v);   // "cudnn", "flash", ... or "math"
#pragma once

#include <string>

#include <torch/torch.h>
#include <torch/version.h>

#ifndef TORCH_VERSION_MAJOR
#error "torch/version.h did not define TORCH_VERSION_MAJOR"
#endif

namespace wand::compat {

constexpr bool kHasSdpa = TORCH_VERSION_MAJOR >= 2;

// softmax(q k^T * scale) v over the last two dims. q: [B, N, Lq, d], k/v: [B, N, Lk, d].
// attn_mask (optional) is additive, broadcastable to [B, N, Lq, Lk].
// On LibTorch 2.x this is at::scaled_dot_product_attention (cuDNN / flash /
// efficient kernels on CUDA); on 1.13 the math path in the input dtype.
inline at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const c10::optional<at::Tensor>& attn_mask = c10::nullopt,
                       c10::optional<double> scale = c10::nullopt) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, attn_mask, 0.0, false, scale);
#else
  const double s = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor logits = at::matmul(q, k.transpose(-2, -1)) * s;
  if (attn_mask) logits = logits + *attn_mask;
  return at::matmul(at::softmax(logits, -1), v);
#endif
}

// Restricts LibTorch's CUDA SDPA to one kernel family: "auto" (all enabled, LibTorch's own
// priority order), "cudnn", "flash", "efficient" or "math". False (and nothing changed) for
// an unknown name or on LibTorch 1.13, which has only the math path.
inline bool set_sdpa_backend(const std::string& name) {
#if TORCH_VERSION_MAJOR >= 2
  const bool all = name == "auto";
  if (!all && name != "cudnn" && name != "flash" && name != "efficient" && name != "math") return false;
  at::globalContext().setSDPUseFlash(all || name == "flash");
  at::globalContext().setSDPUseMemEfficient(all || name == "efficient");
  at::globalContext().setSDPUseCuDNN(all || name == "cudnn");
  at::globalContext().setSDPUseMath(all || name == "math");
  return true;
#else
  return name == "auto" || name == "math";
#endif
}

// The kernel family at::scaled_dot_product_attention picks for these inputs now (the
// enabled backends and their priority): "cudnn", "flash", "efficient", "math", or "none".
inline std::string sdpa_backend_for(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  switch (at::_fused_sdp_choice(q, k, v)) {
    case 0: return "math";
    case 1: return "flash";
    case 2: return "efficient";
    case 3: return "cudnn";
    default: return "none";
  }
#else
  (void)q, (void)k, (void)v;
  return "math";
#endif
}

}  // namespace wand::compat
