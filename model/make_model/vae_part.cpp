// wand-make-model's VAE part: a random-weight Wan2.1_VAE.pth (A14B presets) or
// Wan2.2_VAE.pth (ti2v presets) in the release layout (vae_tensor_specs: 194 /
// 196 fp32 tensors), streamed tensor by tensor through PthWriter.
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"
#include "common/log.h"
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "model/formats/diffusers_vae_keys.h"
#include "model/make_model/parts.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/vae.h"

namespace wand::model::make {

namespace {

// Decoder head scale after the N(0, 1/fan_in) init, so that decoded pixels
// mostly stay inside the [-1, 1] clamp (the golden cases used 0.64 / 1.03).
constexpr double kHeadScale = 0.65;

VaeConfig vae_for_preset(const std::string& preset) {
  if (preset == "tiny-t2v" || preset == "tiny-i2v") return VaeConfig::wan21(8);
  if (preset == "tiny-ti2v") return VaeConfig::wan22(4, 6);
  if (preset == "t2v-A14B" || preset == "i2v-A14B") return VaeConfig::wan21();
  if (preset == "ti2v-5B") return VaeConfig::wan22();
  throw Error(ErrorCode::kBadRequest, "make-model: unknown preset '" + preset + "' for the VAE part");
}

// vae/config.json as diffusers writes it for AutoencoderKLWan (Wan2.1: the defaults; Wan2.2:
// convert_wan_to_diffusers.py's vae22 config).
nlohmann::json diffusers_vae_config(const VaeConfig& cfg) {
  const bool v22 = cfg.version == VaeVersion::kWan22;
  nlohmann::json j = {{"_class_name", "AutoencoderKLWan"},
                      {"_diffusers_version", "0.35.0"},
                      {"base_dim", cfg.dim},
                      {"z_dim", cfg.z_dim},
                      {"dim_mult", {1, 2, 4, 4}},
                      {"num_res_blocks", VaeConfig::kNumResBlocks},
                      {"attn_scales", nlohmann::json::array()},
                      {"temperal_downsample", {false, true, true}},
                      {"dropout", 0.0},
                      {"latents_mean", cfg.latents_mean()},
                      {"latents_std", cfg.latents_std()}};
  if (v22) {
    j["decoder_base_dim"] = cfg.dec_dim;
    j["is_residual"] = true;
    j["in_channels"] = 12;
    j["out_channels"] = 12;
    j["patch_size"] = 2;
    j["scale_factor_spatial"] = 16;
    j["scale_factor_temporal"] = 4;
  }
  return j;
}

}  // namespace

std::string write_vae_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed,
                           const std::string& layout) {
  const VaeConfig cfg = vae_for_preset(preset);
  if (layout == "comfyui") {  // release names in one safetensors file (ComfyUI's wan_2.1_vae.safetensors)
    const std::string name = cfg.version == VaeVersion::kWan21 ? "wan_2.1_vae.safetensors" : "wan2.2_vae.safetensors";
    std::filesystem::create_directories(root);
    at::Generator gen = at::detail::createCPUGenerator(seed ^ 0x5641452dULL);  // "VAE-"
    std::map<std::string, at::Tensor> m;
    for (const auto& s : vae_tensor_specs(cfg)) m.emplace(s.name, random_vae_tensor(s, gen, kHeadScale));
    save_safetensors((root / name).string(), m);
    return name;
  }
  if (layout == "diffusers") {
    // The release init (same generator, spec order), stored under the diffusers names.
    const auto dir = root / "vae";
    std::filesystem::create_directories(dir);
    const bool v22 = cfg.version == VaeVersion::kWan22;
    at::Generator gen = at::detail::createCPUGenerator(seed ^ 0x5641452dULL);  // "VAE-"
    std::map<std::string, at::Tensor> m;
    for (const auto& s : vae_tensor_specs(cfg)) {
      const auto d = formats::diffusers_vae_key(s.name, v22);
      if (!d) throw Error(ErrorCode::kInternal, "make-model: diffusers VAE key map misses " + s.name);
      m.emplace(*d, random_vae_tensor(s, gen, kHeadScale));
    }
    save_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), m, {{"format", "pt"}});
    std::ofstream out(dir / "config.json", std::ios::binary | std::ios::trunc);
    out << diffusers_vae_config(cfg).dump(2) << "\n";
    if (!out) throw Error(ErrorCode::kIo, "write " + (dir / "config.json").string() + " failed");
    wand::log::get("model")->info("make-model vae={} dir={} tensors={} (diffusers naming)", cfg.name(), dir.string(),
                                  m.size());
    return "vae";
  }
  const std::string file = cfg.version == VaeVersion::kWan21 ? "Wan2.1_VAE.pth" : "Wan2.2_VAE.pth";
  std::filesystem::create_directories(root);
  const auto path = root / file;
  const auto specs = vae_tensor_specs(cfg);
  PthWriter w(path.string());
  for (const auto& s : specs) w.declare(s.name, at::kFloat, s.shape);
  at::Generator gen = at::detail::createCPUGenerator(seed ^ 0x5641452dULL);  // "VAE-"
  for (const auto& s : specs) w.write(s.name, random_vae_tensor(s, gen, kHeadScale));
  w.finish();
  wand::log::get("model")->info("make-model vae={} file={} tensors={} params={}", cfg.name(), path.string(),
                                specs.size(), vae_param_count(cfg));
  return file;
}

}  // namespace wand::model::make
