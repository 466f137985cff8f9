#include "scheduler/plan/cost_model.h"

#include <algorithm>
#include <map>
#include <vector>

#include "common/error.h"
#include "model/dit_memory.h"
#include "model/safetensors_header.h"

namespace wand::sched::plan {

namespace {
[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw Error(ErrorCode::kBadRequest, "plan: " + field + ": " + why);
}
}  // namespace

nlohmann::json JobGeometry::to_json() const {
  return {{"width", width},       {"height", height},       {"frames", frames},
          {"steps", steps},       {"latent", {lat_f, lat_h, lat_w}},
          {"tokens", tokens},     {"steps_high", steps_high}, {"steps_low", steps_low},
          {"shift", shift}, {"branches", branches}, {"lora", lora.to_json()}};
}

nlohmann::json LoraCost::to_json() const {
  return {{"files", files}, {"card_bytes", card_bytes}, {"merge_flop_per_block", merge_flop_per_block},
          {"merge_elements_per_block", merge_elements_per_block}};
}

LoraCost lora_cost(const ModelShape& m, const std::vector<std::string>& files) {
  // Note [LoRA cost].
  LoraCost c;
  std::vector<std::string> seen;
  double flop = 0, elements = 0;
  std::uint64_t factors = 0;
  for (const std::string& f : files) {
    if (std::find(seen.begin(), seen.end(), f) != seen.end()) continue;
    seen.push_back(f);
    model::SafetensorsHeader h;
    try {
      h = model::read_safetensors_header(f);
    } catch (const Error& e) {
      throw Error(ErrorCode::kBadRequest, std::string("plan: LoRA: ") + e.what());
    }
    std::map<std::string, std::vector<std::int64_t>> by_name;
    for (const model::SafetensorsEntry& e : h.entries) {
      by_name[e.name] = e.shape;
      factors += e.bytes();
    }
    auto ends = [](const std::string& s, const std::string& suf) {
      return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
    };
    for (const auto& [name, shape] : by_name) {
      if (ends(name, ".lora_down.weight") || ends(name, ".lora_A.weight")) {
        const std::string base = name.substr(0, name.rfind(".lora_"));
        auto up = by_name.find(base + (ends(name, ".lora_A.weight") ? ".lora_B.weight" : ".lora_up.weight"));
        if (up == by_name.end() || shape.size() != 2 || up->second.size() != 2) continue;
        flop += 2.0 * static_cast<double>(shape[0]) * static_cast<double>(up->second[0]) * static_cast<double>(shape[1]);
        elements += static_cast<double>(up->second[0]) * static_cast<double>(shape[1]);
      } else if (ends(name, ".diff") || ends(name, ".diff_b") || ends(name, ".lora_B.bias")) {
        double n = 1;
        for (std::int64_t d : shape) n *= static_cast<double>(d);
        elements += n;
      }
    }
    ++c.files;
  }
  if (c.files == 0) return c;
  const double blocks = static_cast<double>(std::max<std::int64_t>(1, m.num_layers));
  c.merge_flop_per_block = flop / blocks;
  c.merge_elements_per_block = elements / blocks;
  c.card_bytes = factors + static_cast<std::uint64_t>(c.merge_elements_per_block * m.run_bytes) + (64ull << 20);
  return c;
}

double lora_merge_s(const LoraCost& c, const DeviceRates& r) {
  if (c.files == 0) return 0;
  return c.merge_flop_per_block / (r.gemm_tflops.value * 1e12) + c.merge_elements_per_block * 12.0 / (r.hbm_gbps.value * 1e9);
}

namespace {
// Note [Euler schedule] (model/sampler_schedule.cpp): the timesteps of diffusers'
// FlowMatchEulerDiscreteScheduler(shift).set_timesteps(steps), truncated.
std::vector<std::int64_t> euler_timesteps(int steps, double shift) {
  const float fs = static_cast<float>(shift), fs1 = static_cast<float>(shift - 1.0);
  auto shifted_f32 = [&](float s) { return (fs * s) / (1.0f + fs1 * s); };
  const double t_max = static_cast<double>(shifted_f32(1.0f)) * 1000;
  const double t_min = static_cast<double>(shifted_f32(1.0f / 1000.0f)) * 1000;
  std::vector<std::int64_t> out;
  for (int k = 0; k < steps; ++k) {
    const double x = steps == 1 ? t_max : (k == steps - 1 ? t_min : static_cast<double>(k) * ((t_min - t_max) / (steps - 1)) + t_max);
    double sig = x / 1000;
    sig = shift * sig / (1 + (shift - 1) * sig);
    out.push_back(static_cast<std::int64_t>(static_cast<float>(sig) * 1000.0f));
  }
  return out;
}
}  // namespace

int high_noise_steps(const std::string& sampler, int steps, double shift, double boundary) {
  if (boundary <= 0) return steps;
  if (sampler == "euler") {
    int n = 0;
    for (std::int64_t t : euler_timesteps(steps, shift)) n += static_cast<double>(t) >= boundary * 1000 ? 1 : 0;
    return n;
  }
  // model/sampler_schedule.cpp: UniPC linspace(float32(0.999), 0, N + 1)[:N]; DPM++ linspace(1, 0, N + 1)[:N];
  // shifted sigma = shift s / (1 + (shift - 1) s); timestep = trunc(1000 sigma); high iff t >= 1000 boundary.
  const double start =
      sampler == "dpm++" || sampler == "dpmpp" ? 1.0 : static_cast<double>(static_cast<float>(1.0 - 1.0 / 1000));
  int n = 0;
  for (int k = 0; k < steps; ++k) {
    const double s = static_cast<double>(k) * ((0.0 - start) / steps) + start;
    const double sig = shift * s / (1 + (shift - 1) * s);
    const auto t = static_cast<std::int64_t>(sig * 1000);
    if (static_cast<double>(t) >= boundary * 1000) ++n;
  }
  return n;
}

JobGeometry job_geometry(const ModelShape& m, const JobSpec& spec) {
  JobGeometry g;
  g.width = spec.width > 0 ? spec.width : m.default_width;
  g.height = spec.height > 0 ? spec.height : m.default_height;
  g.frames = spec.frames > 0 ? spec.frames : m.default_frames;
  g.steps = spec.steps > 0 ? spec.steps : m.sample_steps;
  g.shift = spec.shift ? *spec.shift : m.sample_shift;
  const int mult_h = m.vae_stride_h * m.patch_h, mult_w = m.vae_stride_w * m.patch_w;
  if (g.width % mult_w != 0) bad("width", std::to_string(g.width) + " is not a multiple of " + std::to_string(mult_w));
  if (g.height % mult_h != 0) bad("height", std::to_string(g.height) + " is not a multiple of " + std::to_string(mult_h));
  if ((g.frames - 1) % m.vae_stride_t != 0) {
    bad("frames", std::to_string(g.frames) + " is not 4k + 1");
  }
  g.lat_f = (g.frames - 1) / m.vae_stride_t + 1;
  g.lat_h = g.height / m.vae_stride_h;
  g.lat_w = g.width / m.vae_stride_w;
  g.tokens = g.lat_f * (g.lat_h / m.patch_h) * (g.lat_w / m.patch_w);
  g.lora = lora_cost(m, spec.lora_files);
  if (m.experts.size() >= 2) {
    g.steps_high = high_noise_steps(spec.sampler, g.steps, g.shift, m.boundary);
    g.steps_low = g.steps - g.steps_high;
  } else {
    g.steps_high = g.steps;
    g.steps_low = 0;
  }
  // Note [Guidance 1]: the scales of the job (1 value: both experts; 2: (low noise, high
  // noise)), else the model's; one model uses the high-noise scale. Two branches when a step
  // that runs guides.
  double g_low = m.guide_scale_low, g_high = m.guide_scale_high;
  if (spec.guide_scale.size() == 1) g_low = g_high = spec.guide_scale[0];
  if (spec.guide_scale.size() == 2) {
    g_low = spec.guide_scale[0];
    g_high = spec.guide_scale[1];
  }
  const bool guided = (g.steps_high > 0 && g_high != 1.0) || (g.steps_low > 0 && g_low != 1.0);
  g.branches = guided ? 2 : 1;
  return g;
}

BlockWork block_work(const ModelShape& m, std::int64_t tokens_local, std::int64_t tokens_total, int ranks) {
  // Note [Block cost model].
  const double S = static_cast<double>(tokens_local), St = static_cast<double>(tokens_total);
  const double D = static_cast<double>(m.dim), F = static_cast<double>(m.ffn_dim), L = static_cast<double>(m.text_len);
  BlockWork w;
  w.gemm_flop = 8 * S * D * D + 4 * S * D * D + 4 * L * D * D + 4 * S * D * F;
  w.attention_flop = 4 * St * St * D / ranks + 4 * S * L * D;
  w.elementwise_tokens = S;
  return w;
}

BlockTime block_time(const ModelShape& m, const BlockWork& w, const DeviceRates& r, const Calibration& c) {
  BlockTime t;
  t.gemm_s = w.gemm_flop / (r.gemm_tflops.value * 1e12);
  t.attention_s = w.attention_flop / (r.attention_tflops.value * 1e12);
  t.elementwise_s = c.elementwise_passes.value * w.elementwise_tokens * static_cast<double>(m.dim) * 4.0 /
                    (r.hbm_gbps.value * 1e9);
  return t;
}

std::uint64_t activation_bytes(std::int64_t tokens, std::int64_t dim, std::int64_t ffn_dim, std::int64_t text_len,
                               std::int64_t chunk_tokens, int run_bytes, int branches) {
  // The executor's estimate (model/dit_memory.h), the residual streams counted per branch
  // held on the card.
  model::DitActivationShape s;
  s.tokens = tokens;
  s.dim = dim;
  s.ffn_dim = ffn_dim;
  s.text_len = text_len;
  s.chunk_tokens = chunk_tokens;
  s.run_bytes = run_bytes;
  s.streams = branches;
  return model::dit_activation_bytes(s);
}

}  // namespace wand::sched::plan
