#include "tests/model/tiny_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <fstream>
#include <mutex>
#include <random>

#include "common/error.h"
#include "model/make_model/make_model.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/vae.h"
#include "model/vae_config.h"
#include "model/wan_config.h"

namespace wand::model::testing {

namespace fs = std::filesystem;

namespace {

at::Tensor randn_cpu(at::IntArrayRef shape, at::Generator& gen) {
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

void write_vae(const fs::path& path, const VaeConfig& cfg, std::uint64_t seed) {
  auto weights = random_vae_weights(cfg, seed, /*head_scale=*/0.5);
  PthWriter w(path.string());
  const auto specs = vae_tensor_specs(cfg);
  for (const auto& s : specs) w.declare(s.name, at::kFloat, s.shape);
  for (const auto& s : specs) w.write(s.name, weights.at(s.name).contiguous());
  w.finish();
}

}  // namespace

void write_tiny_wan_dir(const fs::path& dir, const std::string& preset, std::uint64_t seed) {
  // wand-make-model's library function: DiT experts, umT5 .pth + tokenizer, VAE .pth.
  make::MakeModelOptions o;
  o.preset = preset;
  o.out = dir;
  o.seed = seed;
  make::make_model(o);
  // Parts wand-make-model did not write (older builds) are filled in here.
  const WanConfig cfg = WanConfig::from_preset(preset, kTinyTextDim);
  const bool ti2v = cfg.model_type == "ti2v";
  const fs::path vae = dir / (ti2v ? "Wan2.2_VAE.pth" : "Wan2.1_VAE.pth");
  if (!fs::exists(vae)) write_vae(vae, ti2v ? VaeConfig::wan22(4, 6) : VaeConfig::wan21(8), seed + 100);
}

TextEncodeFn fake_text_encoder(int64_t text_dim, int* calls) {
  return [text_dim, calls](const std::string& text) {
    if (calls) ++*calls;
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(h);
    const int64_t len = std::min<int64_t>(24, 1 + static_cast<int64_t>(text.size()) / 4);
    return randn_cpu({len, text_dim}, gen) * 0.5;
  };
}

fs::path make_temp_dir(const std::string& tag) {
  std::random_device rd;
  const fs::path p = fs::temp_directory_path() / ("wand-" + tag + "-" + std::to_string(rd()) + std::to_string(rd()));
  fs::create_directories(p);
  return p;
}

}  // namespace wand::model::testing
