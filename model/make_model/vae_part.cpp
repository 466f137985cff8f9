// wand-make-model's VAE part: a random-weight Wan2.1_VAE.pth (A14B presets) or
// Wan2.2_VAE.pth (ti2v presets) in the release layout (vae_tensor_specs: 194 /
// 196 fp32 tensors), streamed tensor by tensor through PthWriter.
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"
#include "common/log.h"
#include "model/make_model/parts.h"
#include "model/pth.h"
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

}  // namespace

void write_vae_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed) {
  const VaeConfig cfg = vae_for_preset(preset);
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
}

}  // namespace wand::model::make
