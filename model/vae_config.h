// VaeConfig: which Wan video VAE a checkpoint holds (2.1 for the A14B models,
// 2.2 for TI2V-5B), its widths, its state-dict layout and its latent statistics.
//
//   SafetensorsFile / PthFile src(...);
//   VaeConfig cfg = VaeConfig::from_checkpoint(src);   // infers version, dim, dec_dim, z_dim
//   for (const VaeTensorSpec& s : vae_tensor_specs(cfg)) ...  // 194 (2.1) / 196 (2.2) tensors
//   cfg.latents_mean()[c], cfg.latents_std()[c]         // the wrapper's hard-coded tables
//
// The widths are inferred from tensor shapes, so the tiny golden checkpoints
// (2.1: dim 8; 2.2: dim 4, dec_dim 6) and the released files load the same way;
// every other architecture constant (dim_mult [1,2,4,4], 2 residual blocks,
// temporal downsample [F,T,T]) is the release's and lives only here.
// Plain data, no LibTorch; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wand::model {

class TensorSource;

enum class VaeVersion { kWan21, kWan22 };

struct VaeTensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // conv3d [Cout, Cin, kT, kH, kW], conv2d [Cout, Cin, kH, kW], gamma [C,1,1(,1)]
};

struct VaeConfig {
  VaeVersion version = VaeVersion::kWan21;
  int64_t dim = 96;      // encoder width (2.1: also the decoder's)
  int64_t dec_dim = 96;  // decoder width (2.2 release: 256)
  int64_t z_dim = 16;    // latent channels (2.1: 16, 2.2: 48)

  // Release architecture constants.
  static constexpr int kNumResBlocks = 2;
  static constexpr int kDimMult[4] = {1, 2, 4, 4};
  static constexpr bool kTemporalDownsample[3] = {false, true, true};

  static VaeConfig wan21(int64_t dim = 96);
  static VaeConfig wan22(int64_t dim = 160, int64_t dec_dim = 256);
  // Infers version and widths from tensor shapes and checks every tensor of the
  // layout (names and shapes); throws wand::Error(kModelFormat) naming the source
  // and the first missing, unexpected or mis-shaped key.
  static VaeConfig from_checkpoint(const TensorSource& src);

  // Pixel <-> latent strides: time 4, space 8 (2.1) or 16 (2.2, incl. the 2x2 patchify).
  int64_t spatial_stride() const { return version == VaeVersion::kWan21 ? 8 : 16; }
  static constexpr int64_t kTemporalStride = 4;
  int64_t in_channels() const { return version == VaeVersion::kWan21 ? 3 : 12; }  // after patchify
  std::string name() const;  // "wan2.1-vae dim=96 z=16"

  // Per-channel latent statistics (z_dim values), the Python literals of the
  // official wrappers. Normalised latent: (mu - mean) * (1 / std).
  const std::vector<double>& latents_mean() const;
  const std::vector<double>& latents_std() const;
};

// Every tensor of the state dict in the order torch.save writes it (module
// registration order of the official WanVAE_).
std::vector<VaeTensorSpec> vae_tensor_specs(const VaeConfig& cfg);
int64_t vae_param_count(const VaeConfig& cfg);

}  // namespace wand::model
