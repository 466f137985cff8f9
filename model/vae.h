// Vae: the Wan2.1 (A14B) and Wan2.2 (TI2V-5B) video VAEs in LibTorch, with the
// official chunked causal encode (frames 1, 4, 4, ...) and per-latent-frame
// decode with the feature cache, the latent normalisation and the clamp; plus a
// tiled decode that keeps the decode inside a byte budget.
//
//   auto src = PthFile("Wan2.1_VAE.pth");                 // or any TensorSource
//   Vae vae(src, {at::Device(at::kCUDA, 0)});             // infers 2.1/2.2 and widths
//   at::Tensor z = vae.encode(video);                     // [3,T,H,W] in [-1,1] -> [z, 1+(T-1)/4, H/s, W/s]
//   at::Tensor x = vae.decode(z);                         // -> [3, 1+4(t-1), h*s, w*s] in [-1,1]
//   VaeDecodeOptions o; o.budget_bytes = 16ll << 30;      // tiles only when the untiled decode would not fit
//   at::Tensor y = vae.decode(z, o);
//   VaeEncodeOptions e; e.budget_bytes = 6ll << 30;     // frame-streamed when the chunked encode would not fit
//   at::Tensor z2 = vae.encode(video_on_host, e);
//
// Owns its weights (fp32 as released, or the compute dtype) on options().device.
// Encode/decode keep their feature caches on the stack of the call, so a Vae
// may be used by one thread at a time per call; concurrent calls are safe
// (weights are read-only) but each needs its own working memory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include <ATen/ATen.h>

#include "model/vae_config.h"
#include "model/vae_tiling.h"

namespace wand::model {

class TensorSource;

struct VaeOptions {
  at::Device device = at::kCPU;
  // Compute dtype. kFloat is the official numerics (cuDNN may use TF32 as in
  // PyTorch: see set_vae_cuda_tf32); kBFloat16 is a mixed-precision mode: the
  // high-resolution residual convs in bf16, everything between convs and the
  // precision-critical convs in fp32 (docs/vae-precision.md; within 1e-2
  // relative L2 of the float64 references).
  at::ScalarType dtype = at::kFloat;
};

struct VaeDecodeOptions {
  int64_t budget_bytes = 0;  // 0: untiled; else tiled when the untiled decode would exceed it
  int64_t tile_h = 0;        // force a tile size in latent units (both > 0), ignoring the budget
  int64_t tile_w = 0;
  int64_t overlap = -1;      // latent units; -1: 64 pixels (8 latents for 2.1, 4 for 2.2)
  bool clamp = true;         // clamp to [-1, 1] as the official wrapper
  bool output_on_cpu = false;  // accumulate the video in host memory (not counted in the budget)
  // Where the video goes, when defined: a contiguous fp32 tensor [3, F, H, W] of the decoded
  // shape, on the host when output_on_cpu (e.g. a view of the memory pool's host tier: Note
  // [Videos in the host tier], scheduler/wan/wan_pipeline.cpp), else on the device.
  // decode() then returns it. Undefined: decode() allocates the video.
  at::Tensor output;
  // Called between latent frames (and tiles); may throw to abandon the decode
  // (a cancelled job, issue 15). Unset: never called.
  std::function<void()> check;
};

// How an encode schedules its chunks (Note [VAE frame-streamed encode] in vae.cpp).
enum class VaeEncodeMode {
  kAuto,           // the official chunked schedule when it fits the budget, else frame-streamed
  kChunked,        // chunks of 1, 4, 4, ... frames through the whole encoder (the official schedule)
  kFrameStreamed,  // the high-resolution stages one frame at a time: same numerics, less memory
};

struct VaeEncodeOptions {
  // 0: no limit (official schedule). Else the whole encode on the device
  // (weights + working set + the video when it is on the device + the latent)
  // must fit within it less 10 % safety; encode throws wand::OutOfMemory when
  // even the frame-streamed encode does not (there is no spatially tiled encode).
  int64_t budget_bytes = 0;
  VaeEncodeMode mode = VaeEncodeMode::kAuto;  // forcing a mode ignores the budget's choice, not its check
  // Spatial tiles, only when even the frame-streamed encode does not fit
  // (approximate: Note [VAE encode tiles] in vae.cpp). Forcing a tile size
  // (latents, both > 0) tiles frame-streamed regardless of the budget.
  int64_t tile_h = 0;
  int64_t tile_w = 0;
  int64_t overlap = -1;  // latents between tiles; -1: 128 pixels (16 for 2.1, 8 for 2.2)
};

class Vae {
 public:
  // Loads and checks every tensor (names, shapes) of a .pth / safetensors VAE.
  explicit Vae(const TensorSource& src, VaeOptions opt = {});
  // From tensors in memory (tests, random weights): `weights` must hold every
  // name of vae_tensor_specs(cfg) with its shape.
  Vae(const VaeConfig& cfg, std::unordered_map<std::string, at::Tensor> weights, VaeOptions opt = {});

  const VaeConfig& config() const { return cfg_; }
  const VaeOptions& options() const { return opt_; }
  int64_t weight_bytes() const { return weight_bytes_; }

  // [3, T, H, W] pixels in [-1, 1] (T = 1 + 4k; extra frames dropped as the
  // official code does) -> normalised latent mean [z, 1 + (T-1)/4, H/s, W/s], fp32
  // on options().device. The video may be on the host (any float dtype): it is
  // moved to the device chunk by chunk, and then is not counted in the budget.
  at::Tensor encode(const at::Tensor& video, const VaeEncodeOptions& opt = {}) const;
  // The same before normalisation (mu).
  at::Tensor encode_mu(const at::Tensor& video, const VaeEncodeOptions& opt = {}) const;
  // The plan encode() follows for a video of this shape (pixels; frames = 1 + 4k),
  // with the video on the host (false) or on options().device (true).
  VaeEncodePlan plan_encode(const VaeVideoShape& video, const VaeEncodeOptions& opt = {},
                            bool video_on_device = false) const;
  // Normalised latent [z, t, h, w] -> pixels [3, 1 + 4 (t-1), h*s, w*s], fp32.
  at::Tensor decode(const at::Tensor& z, const VaeDecodeOptions& opt = {}) const;
  // The plan decode() follows for a latent of this shape.
  VaeDecodePlan plan_decode(const VaeLatentShape& z, const VaeDecodeOptions& opt = {}) const;
  // The same for a VAE of `cfg` holding `weight_bytes` of weights on `device` and computing
  // in `dtype`, before it is loaded (a job's memory plan).
  static VaeDecodePlan plan_decode(const VaeConfig& cfg, int64_t weight_bytes, at::Device device,
                                   at::ScalarType dtype, const VaeLatentShape& z,
                                   const VaeDecodeOptions& opt = {});

  // fp32 [z] on the device: the wrapper's mean and 1/std (computed in fp32).
  const at::Tensor& latents_mean() const { return mean_; }
  const at::Tensor& latents_inv_std() const { return inv_std_; }

 private:
  void init_weights(std::unordered_map<std::string, at::Tensor> weights);
  void check_dtype() const;
  void place(const std::string& name, at::Tensor t);  // on the device in its dtype; counts the bytes
  void finish_init();                                  // latent mean / 1/std, the log line
  at::Tensor encode_region(const at::Tensor& video, int64_t frames, bool streamed, int64_t y0, int64_t y1,
                           int64_t x0, int64_t x1) const;
  // Decodes latent rows/columns [y0, y1) x [x0, x1) of the conv2 output x [1, z, t, h, w]
  // with a fresh cache, handing each latent frame's pixels [1, 3, k, (y1-y0)*s, (x1-x0)*s]
  // (unclamped, on the device) to `sink` with the index of its first frame.
  void decode_region(const at::Tensor& x, int64_t y0, int64_t y1, int64_t x0, int64_t x1,
                     const std::function<void(int64_t, at::Tensor&)>& sink, const std::function<void()>& check) const;

  VaeConfig cfg_;
  VaeOptions opt_;
  std::unordered_map<std::string, at::Tensor> w_;  // on opt_.device, opt_.dtype (gammas fp32)
  at::Tensor mean_, inv_std_;
  int64_t weight_bytes_ = 0;
};

// Random weights in the layout of `cfg` following the golden README (weights
// N(0, 1/fan_in), biases N(0, 0.02^2), gammas 1 + N(0, 0.1^2)), with the
// decoder head conv scaled by `head_scale`. CPU fp32, deterministic for a seed.
std::unordered_map<std::string, at::Tensor> random_vae_weights(const VaeConfig& cfg, uint64_t seed,
                                                               double head_scale = 1.0);
// One tensor of that initialisation (for streaming writers), drawn from `gen`.
at::Tensor random_vae_tensor(const VaeTensorSpec& spec, at::Generator& gen, double head_scale = 1.0);

// Allows/forbids TF32 for cuDNN convolutions (PyTorch's default: allowed) and
// cuBLAS matmuls (PyTorch's default: forbidden). Global LibTorch state.
void set_vae_cuda_tf32(bool cudnn, bool matmul);

}  // namespace wand::model
