#include "tests/model/pipeline_tiny_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <fstream>
#include <mutex>
#include <random>

#include "common/error.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/vae.h"
#include "model/vae_config.h"
#include "model/wan_config.h"

namespace wand::model::testing {

namespace fs = std::filesystem;

namespace {

at::Tensor randn_cpu(at::IntArrayRef shape, at::Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

// Random weights with the golden README's scales (weights N(0, 1/fan_in),
// biases N(0, 0.05^2), norm weights 1 + N(0, 0.1^2), modulation N(0, 1/dim)).
void write_dit(const fs::path& dir, const WanConfig& cfg, std::uint64_t seed) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << cfg.to_config_json().dump(2);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  SafetensorsWriter w((dir / "diffusion_pytorch_model.safetensors").string(), {{"format", "pt"}});
  const auto specs = cfg.expected_tensors();
  for (const auto& [name, shape] : specs) w.declare(name, at::kFloat, shape);
  for (const auto& [name, shape] : specs) {
    at::Tensor t = randn_cpu(shape, gen);
    auto ends_with = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with("modulation")) {
      t = t / std::sqrt(static_cast<double>(cfg.dim));
    } else if (ends_with("norm_q.weight") || ends_with("norm_k.weight") || ends_with("norm3.weight")) {
      t = 1.0 + 0.1 * t;
    } else if (ends_with(".bias")) {
      t = 0.05 * t;
    } else {
      int64_t fan_in = 1;
      for (std::size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
      t = t / std::sqrt(static_cast<double>(fan_in));
    }
    w.write(name, t.contiguous());
  }
  w.finish();
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
  const WanConfig cfg = WanConfig::from_preset(preset, kTinyTextDim);
  fs::create_directories(dir);
  if (cfg.model_type == "ti2v") {
    write_dit(dir, cfg, seed);
    write_vae(dir / "Wan2.2_VAE.pth", VaeConfig::wan22(4, 6), seed + 100);
  } else {
    write_dit(dir / "high_noise_model", cfg, seed);
    write_dit(dir / "low_noise_model", cfg, seed + 1);
    write_vae(dir / "Wan2.1_VAE.pth", VaeConfig::wan21(8), seed + 100);
  }
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
