// The pieces of a model directory that wand-make-model writes, one function per
// component family, each implemented beside its model code:
//   DiT experts + configs (make_model.cpp), umT5 .pth + tokenizer (t5_part.cpp),
//   VAE .pth (vae_part.cpp); or their diffusers folders (text_encoder/, tokenizer/, vae/).
// `preset` is one of tiny-t2v, tiny-i2v, tiny-ti2v, t2v-A14B, i2v-A14B, ti2v-5B.
// Tiny presets must build in seconds on CPU; full-size ones must stream (never
// hold a whole component in memory).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace wand::model::make {

// layout "release": <root>/models_t5_umt5-xxl-enc-bf16.pth and <root>/google/umt5-xxl/;
// "diffusers": <root>/text_encoder/ (UMT5EncoderModel: config.json, bf16 shards (half the size each) in the
// transformers naming, model.safetensors.index.json) and <root>/tokenizer/ (spiece.model +
// json); "comfyui": <root>/umt5_xxl_bf16.safetensors (one file, transformers naming) and
// <root>/google/umt5-xxl/. Always the values of the release file of that seed. Returns the
// text encoder's path relative to root.
std::string write_t5_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed,
                          const std::string& layout = "release");
// "release": <root>/Wan2.1_VAE.pth (A14B presets) or <root>/Wan2.2_VAE.pth (ti2v);
// "diffusers": <root>/vae/ (AutoencoderKLWan: config.json, diffusion_pytorch_model.safetensors,
// fp32, the diffusers names of Note [Diffusers VAE keys]); "comfyui": <root>/wan_2.1_vae.safetensors
// or wan2.2_vae.safetensors (release names, fp32). The same values in each. Returns the path
// relative to root.
std::string write_vae_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed,
                           const std::string& layout = "release");
// Width of the umT5 output for a preset (the DiT's text_dim): 4096 for full-size presets.
int t5_dim_for_preset(const std::string& preset);

}  // namespace wand::model::make
