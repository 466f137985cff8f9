// WanConfig: the geometry of one Wan2.2 DiT expert, derived from its config.json.
//
//   WanConfig cfg = WanConfig::from_checkpoint(nlohmann::json::parse(config_text), "dir/config.json");
//   cfg.variant;                         // "t2v-A14B", "i2v-A14B", "ti2v-5B", "tiny-t2v", ...
//   for (auto& [name, shape] : cfg.expected_tensors()) ...   // the strict key set
//
// This is the only place with Wan magic numbers (real dims, defaults of the
// fields that config.json never stores, pipeline constants per variant).
// Plain value type; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::model {

struct WanConfig {
  std::string variant;     // t2v-A14B | i2v-A14B | ti2v-5B | tiny-t2v | tiny-i2v | tiny-ti2v | custom-*
  std::string model_type;  // t2v | i2v | ti2v
  int64_t dim = 0;
  int64_t ffn_dim = 0;
  int64_t freq_dim = 256;
  int64_t text_dim = 4096;  // not in the release config.json (ignore_for_config); tiny presets store it
  int64_t text_len = 512;
  int64_t in_dim = 0;
  int64_t out_dim = 0;
  int64_t num_heads = 0;
  int64_t num_layers = 0;
  double eps = 1e-6;
  int64_t patch_t = 1, patch_h = 2, patch_w = 2;  // patch_size (1, 2, 2)

  int64_t head_dim() const { return dim / num_heads; }

  // Pipeline constants of the variant (tiny presets use those of their family).
  double boundary = 0.0;            // A14B: 0.875 (t2v), 0.9 (i2v); ti2v: 0 (one model)
  double sample_shift = 5.0;
  int sample_steps = 50;
  double guide_scale_low = 5.0;     // sample_guide_scale[0] (low-noise expert)
  double guide_scale_high = 5.0;    // sample_guide_scale[1] (high-noise expert)
  int vae_stride_t = 4, vae_stride_h = 8, vae_stride_w = 8;
  int64_t z_dim = 16;

  // Parses a diffusers config.json of a WanModel; `where` names the file in errors.
  static WanConfig from_checkpoint(const nlohmann::json& j, const std::string& where);
  // Real or tiny geometry by preset name (t2v-A14B, i2v-A14B, ti2v-5B, tiny-t2v, tiny-i2v, tiny-ti2v).
  static WanConfig from_preset(const std::string& preset, int64_t text_dim_override = 0);
  // The config.json diffusers' save_pretrained writes for this geometry
  // (plus "text_dim" when it differs from the 4096 default).
  nlohmann::json to_config_json() const;

  // Every state-dict key with its shape, in a stable order (non-block keys, then blocks).
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected_tensors() const;
  // The 27 keys of block i (shape per key).
  std::vector<std::pair<std::string, std::vector<int64_t>>> block_tensors(int64_t i) const;
  std::vector<std::pair<std::string, std::vector<int64_t>>> non_block_tensors() const;
  int64_t num_params() const;
};

}  // namespace wand::model
