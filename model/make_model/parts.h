// The pieces of a model directory that wand-make-model writes, one function per
// component family, each implemented beside its model code:
//   DiT experts + configs (make_model.cpp), umT5 .pth + tokenizer (t5_part.cpp),
//   VAE .pth (vae_part.cpp).
// `preset` is one of tiny-t2v, tiny-i2v, tiny-ti2v, t2v-A14B, i2v-A14B, ti2v-5B.
// Tiny presets must build in seconds on CPU; full-size ones must stream (never
// hold a whole component in memory).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace wand::model::make {

// Writes <root>/models_t5_umt5-xxl-enc-bf16.pth and <root>/google/umt5-xxl/.
void write_t5_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed);
// Writes <root>/Wan2.1_VAE.pth (A14B presets) or <root>/Wan2.2_VAE.pth (ti2v).
void write_vae_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed);
// Width of the umT5 output for a preset (the DiT's text_dim): 4096 for full-size presets.
int t5_dim_for_preset(const std::string& preset);

}  // namespace wand::model::make
