#include "model/vae.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "model/tensor_source.h"

namespace wand::model {

namespace {

using WeightMap = std::unordered_map<std::string, at::Tensor>;

bool starts_with(const std::string& s, const std::string& pre) { return s.compare(0, pre.size(), pre) == 0; }

// Note [VAE bf16 mode]: (measurements in docs/vae-precision.md) with
// VaeOptions::dtype = kBFloat16 everything between convs stays fp32 (the residual stream, the
// norms, SiLU, the shortcut adds, the resample interleave). The residual-block
// convs (with their 1x1 shortcuts) of the two highest-resolution stages take
// bf16 weights and a bf16-rounded input (their cache slots hold that input) and
// their bf16 output is widened again: encoder stages 0-1 and decoder stages 2-3
// (2.1), encoder stage 1 and decoder stages 2-3 (2.2), the bulk of the FLOPs
// and of the activation memory. All other convs keep fp32 weights and run in
// fp32 (TF32 on cuDNN when allowed): the latent-side 1x1 convs and the
// first/last 3x3x3 convs, the middle blocks and attention, the two
// lowest-resolution stages (encoder 2-3, decoder 0-1), the temporal resample
// convs, the per-frame spatial resample convs (run one frame at a time, so
// their fp32 input is one frame), and for 2.2 the encoder's stage 0 (TI2V-5B
// encodes one image, so its encoder memory does not matter). Measured on the
// CPU (golden vae21 / vae22): all-bf16 1.3e-2 / 1.8e-2 relative L2 off the
// float64 reference, this placement at most 5.5e-3.
bool keep_fp32_in_bf16(const std::string& name, VaeVersion version) {
  if (name.find(".to_qkv.") != std::string::npos || name.find(".proj.") != std::string::npos ||
      name.find(".time_conv.") != std::string::npos || name.find(".resample.1.") != std::string::npos) {
    return true;
  }
  static const char* const kAlways[] = {"conv1.", "conv2.", "encoder.conv1.", "decoder.conv1.", "encoder.head.2.",
                                        "decoder.head.2.", "encoder.middle.", "decoder.middle."};
  // 2.1 (flat module lists): encoder stages 2-3 = downsamples 6-10, decoder
  // stages 0-1 = upsamples 0-7 (each with its resample).
  static const char* const kLow21[] = {"encoder.downsamples.6.", "encoder.downsamples.7.", "encoder.downsamples.8.",
                                       "encoder.downsamples.9.", "encoder.downsamples.10.", "decoder.upsamples.0.",
                                       "decoder.upsamples.1.", "decoder.upsamples.2.", "decoder.upsamples.3.",
                                       "decoder.upsamples.4.", "decoder.upsamples.5.", "decoder.upsamples.6.",
                                       "decoder.upsamples.7."};
  // 2.2 (one module per stage): encoder stages 0, 2, 3 and decoder stages 0-1.
  static const char* const kLow22[] = {"encoder.downsamples.0.", "encoder.downsamples.2.", "encoder.downsamples.3.",
                                       "decoder.upsamples.0.", "decoder.upsamples.1."};
  for (const char* pre : kAlways) {
    if (starts_with(name, pre)) return true;
  }
  if (version == VaeVersion::kWan21) {
    for (const char* pre : kLow21) {
      if (starts_with(name, pre)) return true;
    }
  } else {
    for (const char* pre : kLow22) {
      if (starts_with(name, pre)) return true;
    }
  }
  return false;
}

constexpr double kCudaWorkingFactor = 1.3;  // Note [CUDA decode working set]

// Note [VAE feature cache]: the official chunked encode / decode (reference
// §6.4) runs the causal 3-D convs chunk by chunk (encode: frames 1, 4, 4, ...;
// decode: one latent frame) and carries each conv's temporal history between
// chunks in a cache slot, so the chunks together equal one conv over the whole
// video. The slots are consumed in execution order: a counter restarts at 0 for
// every chunk (Net::start_chunk) and each cached conv takes the next slot: the
// stem (encoder.conv1 / decoder.conv1), both 3x3x3 convs of every residual
// block in block order, the time_conv of every 3-D resample, the head conv.
// The 1x1 shortcuts and the latent-side conv1 / conv2 take none. A slot holds
// the conv's INPUT (after the norm and SiLU; in the weight's dtype, so bf16
// for the convs Note [VAE bf16 mode] runs in bf16), never its output:
//  - an ordinary causal conv (front pad 2) runs over [slot, x] with 2 - len(slot)
//    zero frames in front, then keeps the last 2 frames of x, or [last slot
//    frame, x] when x has one frame (cached_conv);
//  - downsample3d's time_conv (encoder): chunk 0 only stores its last frame and
//    skips the temporal conv; later chunks run the stride-2 conv over [last
//    frame, x] (down3d_time);
//  - upsample3d's time_conv (decoder): chunk 0 stores the marker 'Rep' and skips
//    the conv (1 frame stays 1); chunk 1 runs it with ZERO history (chunk 0's
//    features are not used) and stores [zero frame, x] for a 1-frame x; later
//    chunks follow the ordinary rule (resample).
// The slots live on the stack of one encode / decode call (a tile gets its own:
// Note [VAE tile blending]); a frame-streamed encode reuses the chunk's slots
// one frame at a time (Note [VAE frame-streamed encode]). At 720p the slots are
// about 8.6 GB of the untiled decode's 20 GB peak (the worked example in
// Note [VAE decode memory model], vae_tiling.cpp): a tile's slots shrink with it.
// A slot: empty (None), the 'Rep' marker, or up to 2 frames of the conv's input.
struct Slot {
  bool rep = false;
  at::Tensor t;  // [1, C, L, H, W], L <= 2
};

// The state of one chunked encode or decode: the weights and the cache slots,
// consumed in execution order (the counter restarts at 0 for every chunk).
class Net {
 public:
  Net(const WeightMap& w, std::vector<Slot>& cache, at::ScalarType act) : w_(w), cache_(cache), act_(act) {}
  // dtype of the activations between convs (the residual stream).
  at::ScalarType act() const { return act_; }
  void start_chunk() { idx_ = 0; }
  // The next slot's index: a frame-streamed encode runs its first stages once
  // per frame from slot 0, then resumes the chunk after them (Note [VAE
  // frame-streamed encode]).
  size_t index() const { return idx_; }
  void set_index(size_t i) { idx_ = i; }
  Slot& next_slot() {
    if (idx_ >= cache_.size()) cache_.resize(idx_ + 1);
    return cache_[idx_++];
  }
  const at::Tensor& p(const std::string& name) const {
    auto it = w_.find(name);
    WAND_ASSERT(it != w_.end(), "vae weight " + name + " missing");
    return it->second;
  }
  bool has(const std::string& name) const { return w_.count(name) != 0; }

 private:
  const WeightMap& w_;
  std::vector<Slot>& cache_;
  at::ScalarType act_;
  size_t idx_ = 0;
};

// x / max(||x||_2 over dim 1, 1e-12) * sqrt(C) * gamma (F.normalize, no eps in
// the mean). x: [B, C, ...]; gamma [C,1,1(,1)] fp32. Computed in fp32.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& gamma) {
  const bool low = x.scalar_type() != at::kFloat;
  at::Tensor xf = low ? x.to(at::kFloat) : x;
  at::Tensor denom = xf.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  at::Tensor y = xf / denom;
  y.mul_(std::sqrt(static_cast<double>(x.size(1))));
  y.mul_(gamma);
  return low ? y.to(x.scalar_type()) : y;
}

// Note [CPU conv3d]: LibTorch's CPU conv3d (slow_conv3d, vol2col) is ~10x
// slower than the frame-batched conv2d it equals and needs a 27x column
// buffer, so on the CPU a 3-D conv with temporal kernel kt and stride st is
// computed as the sum over taps k of conv2d(frames t*st + k) with weight
// w[:, :, k] (fp32 rounding of the sum differs from cuDNN's order at the
// 1e-7 level). Other devices use conv3d.

// Conv over the frame axis of `in` [1, C, N, H, W] (already time-padded):
// -> [1, Cout, (N - kt) / st + 1, H', W'], spatial zero padding `sp`.
at::Tensor conv3d_frames(const at::Tensor& in, const at::Tensor& w, const at::Tensor& b, int64_t st,
                         int64_t sp) {
  if (!in.is_cpu()) {
    return at::conv3d(in, w, b, at::IntArrayRef{st, 1, 1}, at::IntArrayRef{0, sp, sp});
  }
  const int64_t kt = w.size(2);
  const int64_t n = in.size(2);
  const int64_t t_out = (n - kt) / st + 1;
  at::Tensor frames = in.select(0, 0).transpose(0, 1);  // [N, C, H, W] view
  at::Tensor out;
  for (int64_t k = 0; k < kt; ++k) {
    at::Tensor src = frames.slice(0, k, k + (t_out - 1) * st + 1, st);
    at::Tensor wk = w.select(2, k);
    at::Tensor y = at::conv2d(src, wk, k == 0 ? b : at::Tensor(), at::IntArrayRef{1, 1},
                              at::IntArrayRef{sp, sp});
    if (k == 0) {
      out = y;
    } else {
      out.add_(y);
    }
  }
  return out.transpose(0, 1).unsqueeze(0).contiguous();  // [1, Cout, T, H', W']
}

// CausalConv3d over [cache, x] with the remaining front time padding as zero
// frames (front pad 2 for temporal kernel 3, 0 for kernel 1) and symmetric
// spatial zero padding (kH - 1) / 2. x: [1, C, T, H, W] -> [1, Cout, T', H, W].
at::Tensor causal_conv(const at::Tensor& x, const at::Tensor* cache, const at::Tensor& w,
                       const at::Tensor& b) {
  const int64_t kt = w.size(2), ks = w.size(3);
  const int64_t sp = (ks - 1) / 2;
  const int64_t front = kt - 1;  // 2 * padding_t with padding_t = (kt - 1) / 2
  if (front == 0) return conv3d_frames(x, w, b, 1, sp);
  const int64_t L = cache ? cache->size(2) : 0;
  const int64_t pad = std::max<int64_t>(0, front - L);
  const int64_t T = x.size(2);
  at::Tensor in = at::empty({x.size(0), x.size(1), pad + L + T, x.size(3), x.size(4)}, x.options());
  if (pad > 0) in.narrow(2, 0, pad).zero_();
  if (L > 0) in.narrow(2, pad, L).copy_(*cache);
  in.narrow(2, pad + L, T).copy_(x);
  return conv3d_frames(in, w, b, 1, sp);
}

// A cached causal 3x3x3 conv (stem, residual convs, head): the slot keeps the
// last 2 input frames (or [last cached frame, x] for a 1-frame chunk).
at::Tensor cached_conv(Net& n, const at::Tensor& x_act, const std::string& prefix) {
  Slot& s = n.next_slot();
  const at::Tensor& w = n.p(prefix + ".weight");
  const at::Tensor x = x_act.to(w.scalar_type());  // the conv input, as cached
  const int64_t T = x.size(2);
  at::Tensor next = x.narrow(2, std::max<int64_t>(0, T - 2), std::min<int64_t>(2, T)).clone();
  if (next.size(2) < 2 && s.t.defined()) {
    next = at::cat({s.t.narrow(2, s.t.size(2) - 1, 1), next}, 2);
  }
  at::Tensor out = causal_conv(x, s.t.defined() ? &s.t : nullptr, w, n.p(prefix + ".bias"));
  s.t = std::move(next);
  s.rep = false;
  return out.to(n.act());
}

at::Tensor res_block(Net& n, const std::string& p, at::Tensor x) {
  at::Tensor h;
  if (n.has(p + ".shortcut.weight")) {
    const at::Tensor& w = n.p(p + ".shortcut.weight");
    h = conv3d_frames(x.to(w.scalar_type()), w, n.p(p + ".shortcut.bias"), 1, 0).to(n.act());
  }
  at::Tensor y = rms_norm(x, n.p(p + ".residual.0.gamma"));
  if (h.defined()) x = at::Tensor();  // the input is no longer needed
  at::silu_(y);
  y = cached_conv(n, y, p + ".residual.2");
  y = rms_norm(y, n.p(p + ".residual.3.gamma"));
  at::silu_(y);
  y = cached_conv(n, y, p + ".residual.6");
  y.add_(h.defined() ? h : x);
  return y;
}

// Per-frame single-head spatial attention. x: [1, C, T, H, W].
at::Tensor attention(Net& n, const std::string& p, const at::Tensor& x) {
  const int64_t C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  at::Tensor f = x.permute({0, 2, 1, 3, 4}).reshape({T, C, H, W});
  f = rms_norm(f, n.p(p + ".norm.gamma"));
  const at::Tensor& wqkv = n.p(p + ".to_qkv.weight");
  at::Tensor qkv = at::conv2d(f.to(wqkv.scalar_type()), wqkv, n.p(p + ".to_qkv.bias"));
  f = at::Tensor();
  qkv = qkv.reshape({T, 1, 3 * C, H * W}).permute({0, 1, 3, 2}).contiguous();  // [T, 1, HW, 3C]
  auto parts = qkv.chunk(3, -1);                                               // [T, 1, HW, C] each
  at::Tensor o = wand::compat::sdpa(parts[0], parts[1], parts[2]);
  parts.clear();
  qkv = at::Tensor();
  o = o.squeeze(1).permute({0, 2, 1}).reshape({T, C, H, W});
  const at::Tensor& wproj = n.p(p + ".proj.weight");
  o = at::conv2d(o.to(wproj.scalar_type()), wproj, n.p(p + ".proj.bias"));
  o = o.reshape({1, T, C, H, W}).permute({0, 2, 1, 3, 4}).to(n.act());
  return (o + x).contiguous();
}

// The per-frame 2-D part of a Resample, one frame at a time (frames are
// independent, so this equals the official batched op). x: [1, C, T, H, W].
at::Tensor resample_spatial(const at::Tensor& x, bool up, const at::Tensor& w, const at::Tensor& b,
                            at::ScalarType act) {
  const int64_t T = x.size(2), H = x.size(3), W = x.size(4);
  at::Tensor out;
  for (int64_t t = 0; t < T; ++t) {
    at::Tensor f = x.select(2, t).to(w.scalar_type());  // [1, C, H, W]
    at::Tensor y;
    if (up) {
      // nearest-exact x2 == pixel duplication for an exact factor 2.
      y = at::upsample_nearest2d(f, std::vector<int64_t>{2 * H, 2 * W}, c10::nullopt, c10::nullopt);
      y = at::conv2d(y, w, b, at::IntArrayRef{1, 1}, at::IntArrayRef{1, 1});
    } else {
      y = at::constant_pad_nd(f, {0, 1, 0, 1}, 0);  // right and bottom only
      y = at::conv2d(y, w, b, at::IntArrayRef{2, 2}, at::IntArrayRef{0, 0});
    }
    if (!out.defined()) out = at::empty({1, y.size(1), T, y.size(2), y.size(3)}, y.options().dtype(act));
    out.select(2, t).copy_(y);
  }
  return out;
}

enum class ResampleMode { kDown2d, kDown3d, kUp2d, kUp3d };

// The temporal half of a downsample3d Resample (after its per-frame spatial
// conv): stride-2 time_conv over [last cached frame, x]; the first chunk only
// caches its last frame. x: [1, C, T, H, W] -> [1, C, T/2 (or 1), H, W].
at::Tensor down3d_time(Net& n, const std::string& p, at::Tensor x) {
  Slot& s = n.next_slot();
  const int64_t T = x.size(2);
  const at::Tensor& w = n.p(p + ".time_conv.weight");
  if (!s.t.defined()) {
    s.t = x.narrow(2, T - 1, 1).to(w.scalar_type()).clone();  // first chunk: no temporal conv (only the last frame is reused)
    return x;
  }
  at::Tensor next = x.narrow(2, T - 1, 1).to(w.scalar_type()).clone();
  at::Tensor in = at::cat({s.t, x.to(w.scalar_type())}, 2);
  x = at::Tensor();
  at::Tensor y = conv3d_frames(in, w, n.p(p + ".time_conv.bias"), 2, 0).to(n.act());
  s.t = std::move(next);
  return y;
}

at::Tensor resample(Net& n, const std::string& p, at::Tensor x, ResampleMode mode) {
  if (mode == ResampleMode::kUp3d) {
    Slot& s = n.next_slot();
    if (!s.rep && !s.t.defined()) {
      s.rep = true;  // first chunk: no temporal conv, the frame count stays 1
    } else {
      const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
      x = x.to(n.p(p + ".time_conv.weight").scalar_type());
      at::Tensor next = x.narrow(2, std::max<int64_t>(0, T - 2), std::min<int64_t>(2, T)).clone();
      if (next.size(2) < 2) {
        next = s.rep ? at::cat({at::zeros_like(next), next}, 2)
                     : at::cat({s.t.narrow(2, s.t.size(2) - 1, 1), next}, 2);
      }
      // 'Rep': zero history (chunk 0's features are not used).
      at::Tensor y = causal_conv(x, s.rep ? nullptr : &s.t, n.p(p + ".time_conv.weight"),
                                 n.p(p + ".time_conv.bias")).to(n.act());
      s.rep = false;
      s.t = std::move(next);
      x = at::Tensor();
      // [B, 2C, T] -> frame 2t + s = channels [sC, (s+1)C) of frame t.
      y = y.reshape({B, 2, C, T, H, W});
      x = at::stack({y.select(1, 0), y.select(1, 1)}, 3).reshape({B, C, 2 * T, H, W});
    }
  }
  const bool up = mode == ResampleMode::kUp2d || mode == ResampleMode::kUp3d;
  x = resample_spatial(x, up, n.p(p + ".resample.1.weight"), n.p(p + ".resample.1.bias"), n.act());
  if (mode == ResampleMode::kDown3d) x = down3d_time(n, p, std::move(x));
  return x;
}

at::Tensor head(Net& n, const std::string& p, const at::Tensor& x) {
  at::Tensor y = rms_norm(x, n.p(p + ".0.gamma"));
  at::silu_(y);
  return cached_conv(n, y, p + ".2");
}

// AvgDown3D (2.2 encoder stage shortcut). x: [B, C, T, H, W].
at::Tensor avg_down(const at::Tensor& x, int64_t cout, int64_t ft, int64_t fs) {
  const int64_t pad_t = (ft - x.size(2) % ft) % ft;
  at::Tensor y = pad_t ? at::constant_pad_nd(x, {0, 0, 0, 0, pad_t, 0}, 0) : x;
  const int64_t B = y.size(0), C = y.size(1), T = y.size(2), H = y.size(3), W = y.size(4);
  const int64_t factor = ft * fs * fs;
  const int64_t group = C * factor / cout;
  y = y.view({B, C, T / ft, ft, H / fs, fs, W / fs, fs}).permute({0, 1, 3, 5, 7, 2, 4, 6}).contiguous();
  y = y.view({B, cout, group, T / ft, H / fs, W / fs});
  return y.mean(2);
}

// DupUp3D (2.2 decoder stage shortcut). x: [B, Cin, T, H, W] -> [B, cout, T*ft, H*fs, W*fs].
at::Tensor dup_up(const at::Tensor& x, int64_t cout, int64_t ft, int64_t fs, bool first_chunk) {
  const int64_t B = x.size(0), Cin = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t rep = cout * ft * fs * fs / Cin;
  at::Tensor y = x.repeat_interleave(rep, 1);
  y = y.view({B, cout, ft, fs, fs, T, H, W}).permute({0, 1, 5, 2, 6, 3, 7, 4}).contiguous();
  y = y.view({B, cout, T * ft, H * fs, W * fs});
  if (first_chunk && ft > 1) y = y.narrow(2, ft - 1, y.size(2) - (ft - 1));
  return y;
}

// "b c f (h q) (w r) -> b (c r q) f h w", q, r = 2.
at::Tensor patchify(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), F = x.size(2), H = x.size(3), W = x.size(4);
  return x.reshape({B, C, F, H / 2, 2, W / 2, 2}).permute({0, 1, 6, 4, 2, 3, 5}).reshape(
      {B, C * 4, F, H / 2, W / 2});
}

// "b (c r q) f h w -> b c f (h q) (w r)".
at::Tensor unpatchify(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1) / 4, F = x.size(2), H = x.size(3), W = x.size(4);
  return x.reshape({B, C, 2, 2, F, H, W}).permute({0, 1, 4, 5, 3, 6, 2}).reshape({B, C, F, H * 2, W * 2});
}

std::string idx(const std::string& base, int i) { return base + "." + std::to_string(i); }

// Encoder stage i (its residual blocks and its downsample). With
// `spatial_only` a downsample3d stops after its per-frame spatial conv; the
// caller runs down3d_time later over the whole chunk (Note [VAE frame-streamed
// encode]). 2.2's AvgDown shortcut is per frame for the stages that do not
// downsample in time, the only ones streamed.
at::Tensor encoder_stage(Net& n, const VaeConfig& cfg, int i, at::Tensor x, bool spatial_only) {
  const int64_t d = cfg.dim;
  const int64_t dims[5] = {d, d * VaeConfig::kDimMult[0], d * VaeConfig::kDimMult[1],
                           d * VaeConfig::kDimMult[2], d * VaeConfig::kDimMult[3]};
  const bool down = i != 3;
  const bool tdown = i < 3 && VaeConfig::kTemporalDownsample[i];
  ResampleMode mode = tdown ? ResampleMode::kDown3d : ResampleMode::kDown2d;
  if (spatial_only) mode = ResampleMode::kDown2d;
  if (cfg.version == VaeVersion::kWan22) {
    WAND_ASSERT(!(spatial_only && tdown), "vae 2.2 encode: a temporal stage cannot be streamed by frame");
    const std::string stage = "encoder.downsamples." + std::to_string(i) + ".downsamples";
    at::Tensor shortcut = avg_down(x, dims[i + 1], tdown ? 2 : 1, down ? 2 : 1);
    for (int r = 0; r < VaeConfig::kNumResBlocks; ++r) x = res_block(n, idx(stage, r), std::move(x));
    if (down) x = resample(n, idx(stage, VaeConfig::kNumResBlocks), std::move(x), mode);
    x.add_(shortcut);
  } else {
    int k = 3 * i;  // stages 0-2: 2 residual blocks + a resample; stage 3: 2 blocks
    for (int r = 0; r < VaeConfig::kNumResBlocks; ++r) {
      x = res_block(n, idx("encoder.downsamples", k++), std::move(x));
    }
    if (down) x = resample(n, idx("encoder.downsamples", k++), std::move(x), mode);
  }
  return x;
}

// The 2.1 module name of stage i's resample (the one down3d_time resumes).
std::string encoder_resample_name(const VaeConfig& cfg, int i) {
  if (cfg.version == VaeVersion::kWan22) {
    return "encoder.downsamples." + std::to_string(i) + ".downsamples." + std::to_string(VaeConfig::kNumResBlocks);
  }
  return idx("encoder.downsamples", 3 * i + VaeConfig::kNumResBlocks);
}

// Stages [from, 4), the middle blocks and the head. x: [1, C, T_c, H', W'] -> [1, 2z, 1, h, w].
at::Tensor encoder_rest(Net& n, const VaeConfig& cfg, at::Tensor x, int from) {
  for (int i = from; i < 4; ++i) x = encoder_stage(n, cfg, i, std::move(x), false);
  x = res_block(n, "encoder.middle.0", std::move(x));
  x = attention(n, "encoder.middle.1", x);
  x = res_block(n, "encoder.middle.2", std::move(x));
  return head(n, "encoder.head", x);
}

// One encoder chunk, the official schedule. x: [1, Cin, T_c, H, W] -> [1, 2z, 1, H/8, W/8]
// (2.1; 2.2 after patchify).
at::Tensor encoder_chunk(Net& n, const VaeConfig& cfg, at::Tensor x) {
  n.start_chunk();
  x = cached_conv(n, x, "encoder.conv1");
  return encoder_rest(n, cfg, std::move(x), 0);
}

// Note [VAE frame-streamed encode]
// The official encode runs the encoder on chunks of 4 frames (the first chunk:
// 1 frame). Its peak is the first stage's residual blocks at full resolution
// over 4 frames: x, its norm, the cache-prepended conv input [C, 6, H, W] and
// the conv output, beside the caches (2.1 at 720p: 96 ch x 4 frames x
// 1280x720 fp32 = 1.4 GB per activation). Up to the first temporal
// downsample every op is causal per frame: the convs see only earlier frames,
// through their caches, and the norms, SiLU, adds and the per-frame spatial
// resample do not mix frames. So those stages (2.1: stages 0 and 1 up to the
// spatial conv of stage 1's downsample3d; 2.2: stage 0) run one frame at a
// time with the same cache slots: a 1-frame step keeps [last cached frame,
// this frame] in each slot, which after the 4th frame is what the 4-frame
// chunk would have kept, and the conv of frame t sees [t-2, t-1, t] (zero
// front padding where the history is shorter) exactly as in the chunk. The
// frames' outputs (at 1/4 resolution for 2.1) are gathered into the chunk,
// the stride-2 time_conv and the later stages run on it as before, resuming
// the slot counter after the streamed slots. The result equals the official
// encode up to floating-point summation order (the convs run on 1 frame
// instead of 4); the transients of the high-resolution stages shrink from 4
// frames to 1 (the caches stay). Also exact and cheap: the video is moved to
// the device chunk by chunk, so it may stay on the host.
//
// What the i2v input does not allow: [image, 80 zero frames] looks cheap, but
// every conv has a bias and its cache carries the image forward, so the
// features of the zero frames are neither zero nor spatially constant (the
// zero spatial padding makes borders differ), and the lowest stages look back
// 2 chunks per conv over ~9 convs: the image reaches every latent frame. No
// exact shortcut exists beyond not storing the zeros twice.

// How many leading encoder stages run one frame at a time (the last of them
// only up to its spatial resample conv when it downsamples in time).
int streamed_stages(const VaeConfig& cfg) { return cfg.version == VaeVersion::kWan21 ? 2 : 1; }

// One encoder chunk of `frames` frames, frame-streamed. frame(f): the chunk's
// frame f as [1, Cin, 1, H, W] on the device.
template <class FrameFn>
at::Tensor encoder_chunk_streamed(Net& n, const VaeConfig& cfg, int64_t frames, FrameFn&& frame) {
  const int S = streamed_stages(cfg);
  at::Tensor buf;
  size_t resume = 0;
  for (int64_t f = 0; f < frames; ++f) {
    n.start_chunk();
    at::Tensor y = cached_conv(n, frame(f), "encoder.conv1");
    for (int i = 0; i < S; ++i) y = encoder_stage(n, cfg, i, std::move(y), /*spatial_only=*/i == S - 1);
    if (!buf.defined()) buf = at::empty({1, y.size(1), frames, y.size(3), y.size(4)}, y.options());
    buf.narrow(2, f, 1).copy_(y);
    resume = n.index();
  }
  n.set_index(resume);
  at::Tensor x = std::move(buf);
  if (VaeConfig::kTemporalDownsample[S - 1]) x = down3d_time(n, encoder_resample_name(cfg, S - 1), std::move(x));
  return encoder_rest(n, cfg, std::move(x), S);
}

// One decoder chunk (one latent frame). x: [1, z, 1, h, w] -> [1, 3 or 12, 1 or 4, 8h, 8w].
at::Tensor decoder_chunk(Net& n, const VaeConfig& cfg, at::Tensor x, bool first_chunk) {
  n.start_chunk();
  x = cached_conv(n, x, "decoder.conv1");
  x = res_block(n, "decoder.middle.0", std::move(x));
  x = attention(n, "decoder.middle.1", x);
  x = res_block(n, "decoder.middle.2", std::move(x));
  const int64_t d = cfg.dec_dim;
  const int64_t dims[5] = {d * 4, d * 4, d * 4, d * 2, d};
  const bool tup[3] = {VaeConfig::kTemporalDownsample[2], VaeConfig::kTemporalDownsample[1],
                       VaeConfig::kTemporalDownsample[0]};
  int k = 0;
  for (int i = 0; i < 4; ++i) {
    const bool up = i != 3;
    const bool tu = i < 3 && tup[i];
    const ResampleMode mode = tu ? ResampleMode::kUp3d : ResampleMode::kUp2d;
    if (cfg.version == VaeVersion::kWan22) {
      const std::string stage = "decoder.upsamples." + std::to_string(i) + ".upsamples";
      at::Tensor shortcut;
      if (up) shortcut = dup_up(x, dims[i + 1], tu ? 2 : 1, 2, first_chunk);
      for (int r = 0; r < VaeConfig::kNumResBlocks + 1; ++r) {
        x = res_block(n, idx(stage, r), std::move(x));
      }
      if (up) {
        x = resample(n, idx(stage, VaeConfig::kNumResBlocks + 1), std::move(x), mode);
        x.add_(shortcut);
      }
    } else {
      for (int r = 0; r < VaeConfig::kNumResBlocks + 1; ++r) {
        x = res_block(n, idx("decoder.upsamples", k++), std::move(x));
      }
      if (up) x = resample(n, idx("decoder.upsamples", k++), std::move(x), mode);
    }
  }
  return head(n, "decoder.head", x);
}

// The blend weights of tile k along one axis (Note [VAE tile blending]):
// 1, ramping linearly across each interior overlap with a neighbour,
// (i + 1) / (ov + 1); `scale` output units per span unit (the decode's pixels
// per latent, 1 for the encode's latent).
at::Tensor tile_ramp(const std::vector<std::pair<int64_t, int64_t>>& spans, size_t k, int64_t scale,
                     const at::Device& device) {
  const int64_t len = (spans[k].second - spans[k].first) * scale;
  std::vector<float> w(static_cast<size_t>(len), 1.0f);
  if (k > 0) {
    const int64_t ov = std::min(len, std::max<int64_t>(0, spans[k - 1].second - spans[k].first) * scale);
    for (int64_t i = 0; i < ov; ++i) w[i] = static_cast<float>(i + 1) / static_cast<float>(ov + 1);
  }
  if (k + 1 < spans.size()) {
    const int64_t ov = std::min(len, std::max<int64_t>(0, spans[k].second - spans[k + 1].first) * scale);
    for (int64_t i = 0; i < ov; ++i) w[len - 1 - i] *= static_cast<float>(i + 1) / static_cast<float>(ov + 1);
  }
  return at::from_blob(w.data(), {len}, at::TensorOptions().dtype(at::kFloat)).clone().to(device);
}

void check_video(const VaeConfig& cfg, const at::Tensor& v) {
  const int64_t s = cfg.spatial_stride();
  if (v.dim() != 4 || v.size(0) != 3 || v.size(1) < 1 || v.size(2) % s != 0 || v.size(3) % s != 0 ||
      v.size(2) == 0 || v.size(3) == 0) {
    std::ostringstream o;
    o << "vae encode: video must be [3, T, H, W] with H, W multiples of " << s << ", got "
      << v.sizes();
    throw Error(ErrorCode::kBadRequest, o.str());
  }
}

void check_latent(const VaeConfig& cfg, const at::Tensor& z) {
  if (z.dim() != 4 || z.size(0) != cfg.z_dim || z.size(1) < 1 || z.size(2) < 1 || z.size(3) < 1) {
    std::ostringstream o;
    o << "vae decode: latent must be [" << cfg.z_dim << ", t, h, w], got " << z.sizes();
    throw Error(ErrorCode::kBadRequest, o.str());
  }
}

double fan_in(const std::vector<int64_t>& shape) {
  double f = 1;
  for (size_t i = 1; i < shape.size(); ++i) f *= static_cast<double>(shape[i]);
  return f;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}


}  // namespace

Vae::Vae(const TensorSource& src, VaeOptions opt) : opt_(opt) {
  cfg_ = VaeConfig::from_checkpoint(src);
  // One tensor at a time: read, placed on the device, its host copy freed (the VAE is loaded
  // for each phase of a job: no 0.5 GB of fp32 weights on the host each time).
  check_dtype();
  for (const auto& s : vae_tensor_specs(cfg_)) place(s.name, src.load(s.name, at::kFloat));
  finish_init();
}

Vae::Vae(const VaeConfig& cfg, std::unordered_map<std::string, at::Tensor> weights, VaeOptions opt)
    : cfg_(cfg), opt_(opt) {
  for (const auto& s : vae_tensor_specs(cfg_)) {
    auto it = weights.find(s.name);
    if (it == weights.end()) throw Error(ErrorCode::kModelFormat, "vae weights: key " + s.name + " missing");
    if (it->second.sizes().vec() != s.shape) {
      std::ostringstream o;
      o << "vae weights: key " << s.name << " has shape " << it->second.sizes() << ", expected "
        << at::IntArrayRef(s.shape);
      throw Error(ErrorCode::kModelFormat, o.str());
    }
  }
  init_weights(std::move(weights));
}

void Vae::check_dtype() const {
  if (opt_.dtype != at::kFloat && opt_.dtype != at::kBFloat16) {
    throw Error(ErrorCode::kConfig, "vae: compute dtype must be float32 or bfloat16");
  }
}

void Vae::place(const std::string& name, at::Tensor t) {
  const at::ScalarType dt =
      ends_with(name, "gamma") || keep_fp32_in_bf16(name, cfg_.version) ? at::kFloat : opt_.dtype;
  at::Tensor v = t.to(opt_.device, dt).contiguous();
  t = at::Tensor();  // the host copy goes before the next tensor is read
  weight_bytes_ += static_cast<int64_t>(v.numel() * v.element_size());
  w_[name] = std::move(v);
}

void Vae::init_weights(std::unordered_map<std::string, at::Tensor> weights) {
  check_dtype();
  for (auto& [name, t] : weights) place(name, std::move(t));
  finish_init();
}

void Vae::finish_init() {
  const auto& mean = cfg_.latents_mean();
  const auto& stdv = cfg_.latents_std();
  std::vector<float> m(mean.begin(), mean.end()), inv(stdv.size());
  // 1.0 / std in fp32, as the wrapper computes it on its fp32 tensor.
  for (size_t i = 0; i < stdv.size(); ++i) inv[i] = 1.0f / static_cast<float>(stdv[i]);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  mean_ = at::from_blob(m.data(), {static_cast<int64_t>(m.size())}, f32).clone().to(opt_.device);
  inv_std_ = at::from_blob(inv.data(), {static_cast<int64_t>(inv.size())}, f32).clone().to(opt_.device);
  wand::log::get("model")->info("vae loaded config={} device={} dtype={} weights={}", cfg_.name(),
                                opt_.device.str(), c10::toString(opt_.dtype),
                                format_bytes(static_cast<uint64_t>(weight_bytes_)));
}

VaeEncodePlan Vae::plan_encode(const VaeVideoShape& v, const VaeEncodeOptions& o, bool video_on_device) const {
  VaePlanOptions po;
  po.elem_bytes = opt_.dtype == at::kBFloat16 ? 2 : 4;
  po.weight_bytes = weight_bytes_;
  po.input_elem_bytes = video_on_device ? 4 : 0;
  po.cpu_convs = opt_.device.is_cpu();
  // The decode's factor (see Note [CUDA decode working set]: same kernels, same
  // allocator), not yet measured for the encode; the GPU test
  // VaeGpu.EncodePeakUnderBudget720p checks it.
  po.working_factor = opt_.device.is_cpu() ? 1.0 : kCudaWorkingFactor;
  po.overlap = o.overlap;
  if (o.tile_h > 0 && o.tile_w > 0) return fixed_vae_encode_plan(cfg_, v, true, o.budget_bytes, po, o.tile_h, o.tile_w);
  if (o.mode != VaeEncodeMode::kAuto) {
    return fixed_vae_encode_plan(cfg_, v, o.mode == VaeEncodeMode::kFrameStreamed, o.budget_bytes, po);
  }
  return plan_vae_encode(cfg_, v, o.budget_bytes, po);
}

at::Tensor Vae::encode_mu(const at::Tensor& video, const VaeEncodeOptions& o) const {
  check_video(cfg_, video);
  c10::NoGradGuard no_grad;
  const int64_t T = video.size(1);
  const int64_t chunks = 1 + (T - 1) / 4;
  if (T != 1 + 4 * (chunks - 1)) {
    wand::log::get("model")->warn("vae encode frames={} uses the first {} (T = 1 + 4k)", T,
                                  1 + 4 * (chunks - 1));
  }
  const VaeVideoShape shape{1 + 4 * (chunks - 1), video.size(2), video.size(3)};
  const bool on_device = video.device() == opt_.device;
  const VaeEncodePlan plan = plan_encode(shape, o, on_device);
  if (!plan.fits) {
    throw OutOfMemory("vae-encode", static_cast<uint64_t>(plan.est_total_bytes),
                      static_cast<uint64_t>(o.budget_bytes), static_cast<uint64_t>(o.budget_bytes),
                      "even the smallest frame-streamed encode tile does not fit the encode budget: " +
                          plan.describe());
  }
  wand::log::get("model")->debug("vae encode video={}x{}x{} plan={}", shape.frames, shape.height,
                                 shape.width, plan.describe());
  if (!plan.tiled) return encode_region(video, shape.frames, plan.streamed, 0, shape.height, 0, shape.width);
  // Note [VAE encode tiles]: each tile (latent spans of the plan, the pixels
  // under them) is encoded over all frames with its own feature cache,
  // frame-streamed, and its mu is blended into the latent with the decode's
  // linear ramps across each interior overlap, (i + 1) / (ov + 1), normalised
  // by the summed weights. Approximate: the encoder's receptive field is
  // larger than the overlap (its middle attention is global per frame), so a
  // tile's latent near its edge differs from the untiled one; the default
  // overlap is 128 pixels. Errors: docs/vae-tiling.md.
  const int64_t s = cfg_.spatial_stride();
  const int64_t t = 1 + (shape.frames - 1) / 4, lh = shape.height / s, lw = shape.width / s;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(opt_.device);
  at::Tensor mu = at::zeros({cfg_.z_dim, t, lh, lw}, f32);
  at::Tensor wsum = at::zeros({lh, lw}, f32);
  auto ramp = [&](const std::vector<std::pair<int64_t, int64_t>>& spans, size_t k) {
    return tile_ramp(spans, k, 1, opt_.device);
  };
  for (size_t r = 0; r < plan.rows.size(); ++r) {
    at::Tensor wy = ramp(plan.rows, r).view({-1, 1});
    for (size_t c = 0; c < plan.cols.size(); ++c) {
      const auto [y0, y1] = plan.rows[r];
      const auto [x0, x1] = plan.cols[c];
      at::Tensor wxy = wy * ramp(plan.cols, c).view({1, -1});
      at::Tensor tile = encode_region(video, shape.frames, true, y0 * s, y1 * s, x0 * s, x1 * s);
      tile.mul_(wxy);
      mu.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0).add_(tile);
      wsum.narrow(0, y0, y1 - y0).narrow(1, x0, x1 - x0).add_(wxy);
    }
  }
  mu.div_(wsum);
  return mu;
}

// mu [z, t, (y1-y0)/s, (x1-x0)/s] of the first `frames` frames of the video's
// pixel rows [y0, y1) and columns [x0, x1), with a fresh feature cache.
at::Tensor Vae::encode_region(const at::Tensor& video, int64_t frames, bool streamed, int64_t y0, int64_t y1,
                              int64_t x0, int64_t x1) const {
  const int64_t chunks = 1 + (frames - 1) / 4;
  // Frames [t0, t0 + len) as the encoder's input [1, Cin, len, H', W'] on the
  // device: the video may stay on the host (Note [VAE frame-streamed encode]).
  auto input = [&](int64_t t0, int64_t len) {
    at::Tensor x = video.narrow(1, t0, len).narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0);
    x = x.to(opt_.device, at::kFloat).contiguous().unsqueeze(0);
    if (cfg_.version == VaeVersion::kWan22) x = patchify(x);  // [1, 12, len, H/2, W/2]
    return x;
  };
  std::vector<Slot> cache;
  Net n(w_, cache, at::kFloat);
  std::vector<at::Tensor> outs;
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t t0 = i == 0 ? 0 : 1 + 4 * (i - 1);
    const int64_t len = i == 0 ? 1 : 4;
    if (streamed) {
      outs.push_back(encoder_chunk_streamed(n, cfg_, len, [&](int64_t f) { return input(t0 + f, 1); }));
    } else {
      outs.push_back(encoder_chunk(n, cfg_, input(t0, len)));
    }
  }
  cache.clear();
  at::Tensor out = outs.size() == 1 ? outs[0] : at::cat(outs, 2);
  outs.clear();
  const at::Tensor& w1 = w_.at("conv1.weight");
  out = conv3d_frames(out.to(w1.scalar_type()), w1, w_.at("conv1.bias"), 1, 0);
  return out.narrow(1, 0, cfg_.z_dim).squeeze(0).to(at::kFloat).contiguous();
}

at::Tensor Vae::encode(const at::Tensor& video, const VaeEncodeOptions& o) const {
  at::Tensor mu = encode_mu(video, o);
  return ((mu - mean_.view({-1, 1, 1, 1})) * inv_std_.view({-1, 1, 1, 1})).contiguous();
}

VaeDecodePlan Vae::plan_decode(const VaeLatentShape& z, const VaeDecodeOptions& o) const {
  return plan_decode(cfg_, weight_bytes_, opt_.device, opt_.dtype, z, o);
}

VaeDecodePlan Vae::plan_decode(const VaeConfig& cfg, int64_t weight_bytes, at::Device device,
                               at::ScalarType dtype, const VaeLatentShape& z, const VaeDecodeOptions& o) {
  VaePlanOptions po;
  // The bf16 mode keeps fp32 between convs (Note [VAE bf16 mode]); MemSim
  // replays it with its copies (bf16 conv inputs and caches, widened outputs).
  po.elem_bytes = dtype == at::kBFloat16 ? 2 : 4;
  po.output_elem_bytes = o.output_on_cpu ? 0 : 4;
  po.weight_bytes = weight_bytes;
  po.overlap = o.overlap;
  po.cpu_convs = device.is_cpu();
  // Note [CUDA decode working set]: on the H100 (LibTorch 2.11, cuDNN, fp32)
  // the caching allocator's peak was 1.21x the modelled working set for the
  // untiled 720p decode and 1.18x for 90x84-latent tiles (cuDNN workspaces,
  // allocator rounding); the CPU model matched within 0.2%. Fragmentation of
  // the reserve comes on top: run with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.
  po.working_factor = device.is_cpu() ? 1.0 : kCudaWorkingFactor;
  if (o.tile_h > 0 && o.tile_w > 0) return fixed_vae_decode_plan(cfg, z, o.tile_h, o.tile_w, o.overlap, po);
  return plan_vae_decode(cfg, z, o.budget_bytes, po);
}

void Vae::decode_region(const at::Tensor& x, int64_t y0, int64_t y1, int64_t x0, int64_t x1,
                        const std::function<void(int64_t, at::Tensor&)>& sink,
                        const std::function<void()>& check) const {
  const int64_t t = x.size(2);
  const int64_t frames = 1 + 4 * (t - 1);
  at::Tensor region = x.narrow(3, y0, y1 - y0).narrow(4, x0, x1 - x0);
  std::vector<Slot> cache;
  Net n(w_, cache, at::kFloat);
  int64_t f = 0;
  for (int64_t i = 0; i < t; ++i) {
    if (check) check();
    at::Tensor y = decoder_chunk(n, cfg_, region.narrow(2, i, 1).contiguous(), i == 0);
    if (cfg_.version == VaeVersion::kWan22) y = unpatchify(y);
    sink(f, y);
    f += y.size(2);
  }
  WAND_ASSERT(f == frames, "vae decode produced an unexpected frame count");
}

at::Tensor Vae::decode(const at::Tensor& z, const VaeDecodeOptions& o) const {
  check_latent(cfg_, z);
  c10::NoGradGuard no_grad;
  const VaeLatentShape shape{z.size(1), z.size(2), z.size(3)};
  const VaeDecodePlan plan = plan_decode(shape, o);
  if (!plan.fits) {
    throw OutOfMemory("vae-decode", static_cast<uint64_t>(plan.est_total_bytes),
                      static_cast<uint64_t>(o.budget_bytes), static_cast<uint64_t>(o.budget_bytes),
                      "even the smallest tile does not fit the decode budget: " + plan.describe());
  }
  auto log = wand::log::get("model");
  log->debug("vae decode latent={}x{}x{} plan={}", shape.frames, shape.height, shape.width,
             plan.describe());
  // z / (1/std) + mean (division by the stored fp32 reciprocal), then conv2 on the whole latent.
  at::Tensor x = z.to(opt_.device, at::kFloat).unsqueeze(0);
  x = x / inv_std_.view({1, -1, 1, 1, 1}) + mean_.view({1, -1, 1, 1, 1});
  const at::Tensor& w2 = w_.at("conv2.weight");
  x = conv3d_frames(x.to(w2.scalar_type()), w2, w_.at("conv2.bias"), 1, 0).to(at::kFloat);
  const at::Device out_dev = o.output_on_cpu ? at::Device(at::kCPU) : opt_.device;
  const int64_t s = cfg_.spatial_stride();
  const int64_t frames = 1 + 4 * (shape.frames - 1);
  const std::vector<int64_t> sizes{3, frames, shape.height * s, shape.width * s};
  at::Tensor video;  // [3, F, H, W] fp32 on out_dev
  if (o.output.defined()) {
    if (o.output.sizes() != at::IntArrayRef(sizes) || o.output.scalar_type() != at::kFloat ||
        o.output.device() != out_dev || !o.output.is_contiguous()) {
      throw Error(ErrorCode::kInternal, "vae decode: the given output is not a contiguous fp32 [3, " +
                                            std::to_string(frames) + ", " + std::to_string(sizes[2]) + ", " +
                                            std::to_string(sizes[3]) + "] tensor on " + out_dev.str());
    }
    video = o.output;
  } else {
    video = at::empty(sizes, at::TensorOptions().dtype(at::kFloat).device(out_dev));
  }
  at::Tensor out = video.unsqueeze(0);  // [1, 3, F, H, W], the same storage
  if (!plan.tiled) {
    decode_region(
        x, 0, shape.height, 0, shape.width,
        [&](int64_t f, at::Tensor& y) { out.narrow(2, f, y.size(2)).copy_(y); }, o.check);
  } else {
    // Note [VAE tile blending]: each tile is decoded with its own feature cache
    // over all frames (the temporal chunking is unchanged); on interior edges
    // its weight ramps linearly across the overlap with the neighbour,
    // (i + 1) / (ov + 1), frame borders keep weight 1. The blend divides by the
    // summed weights (where two ramps meet they already sum to 1). Each latent
    // frame's pixels are weighted on the device and added into the video as
    // they come (one product per element, so the same bits wherever it runs):
    // no tile-sized buffer besides the video.
    out.zero_();
    at::Tensor wsum = at::zeros({shape.height * s, shape.width * s}, at::TensorOptions().device(out_dev));
    for (size_t r = 0; r < plan.rows.size(); ++r) {
      at::Tensor wy = tile_ramp(plan.rows, r, s, opt_.device).view({-1, 1});
      for (size_t c = 0; c < plan.cols.size(); ++c) {
        at::Tensor wxy = wy * tile_ramp(plan.cols, c, s, opt_.device).view({1, -1});  // [th*s, tw*s]
        const auto [y0, y1] = plan.rows[r];
        const auto [x0, x1] = plan.cols[c];
        at::Tensor dst = out.narrow(3, y0 * s, (y1 - y0) * s).narrow(4, x0 * s, (x1 - x0) * s);
        decode_region(
            x, y0, y1, x0, x1,
            [&](int64_t f, at::Tensor& y) { dst.narrow(2, f, y.size(2)).add_((y * wxy).to(out_dev)); },
            o.check);
        wsum.narrow(0, y0 * s, (y1 - y0) * s).narrow(1, x0 * s, (x1 - x0) * s).add_(wxy.to(out_dev));
      }
    }
    out.div_(wsum);
  }
  if (o.clamp) video.clamp_(-1.0, 1.0);
  return video;
}

std::unordered_map<std::string, at::Tensor> random_vae_weights(const VaeConfig& cfg, uint64_t seed,
                                                               double head_scale) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::unordered_map<std::string, at::Tensor> w;
  for (const auto& s : vae_tensor_specs(cfg)) w.emplace(s.name, random_vae_tensor(s, gen, head_scale));
  return w;
}

at::Tensor random_vae_tensor(const VaeTensorSpec& spec, at::Generator& gen, double head_scale) {
  at::Tensor t = at::empty(spec.shape, at::TensorOptions().dtype(at::kFloat));
  if (ends_with(spec.name, "gamma")) {
    t.normal_(1.0, 0.1, gen);
  } else if (ends_with(spec.name, "bias")) {
    t.normal_(0.0, 0.02, gen);
  } else {
    t.normal_(0.0, 1.0 / std::sqrt(fan_in(spec.shape)), gen);
    if (spec.name == "decoder.head.2.weight") t.mul_(head_scale);
  }
  return t;
}

void set_vae_cuda_tf32(bool cudnn, bool matmul) {
  at::globalContext().setAllowTF32CuDNN(cudnn);
  at::globalContext().setAllowTF32CuBLAS(matmul);
}

}  // namespace wand::model
