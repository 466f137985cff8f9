// Test support: LoRA files for a tiny Wan DiT written in each key layout (Note [LoRA key
// layouts], model/formats/lora_keys.h) from the same random factors, and the merge computed
// here independently (double precision, the formula written out) to check wand's against.
//
//   TestLora l = random_lora(cfg, /*seed=*/3);
//   write_lora(l, LoraLayoutName::kKohya, dir / "k.safetensors");
//   at::Tensor want = l.merged(w_fp32, "blocks.0.self_attn.q.weight", /*strength=*/0.7);
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "model/safetensors.h"
#include "model/wan_config.h"

namespace wand::model::testing {

enum class TestLayout { kDiffusers, kComfy, kKohya };

struct TestLoraPair {
  std::string block_module;     // release name inside the block, e.g. "self_attn.q"
  int64_t block = 0;
  at::Tensor down, up;          // [r, in], [out, r] fp32
  std::optional<double> alpha;  // absent: scale 1
};
struct TestLoraDiff {
  std::string block_module;     // "norm3", "modulation", "self_attn.q"
  int64_t block = 0;
  bool bias = false;            // diff_b (of <module>.bias) or diff (of <module>.weight / the parameter)
  at::Tensor value;             // fp32, the target's shape
};
struct TestLora {
  std::vector<TestLoraPair> pairs;
  std::vector<TestLoraDiff> diffs;

  // The release key a pair / diff changes.
  static std::string weight_key(const std::string& block_module, int64_t block) {
    const std::string p = "blocks." + std::to_string(block) + "." + block_module;
    return block_module == "modulation" ? p : p + ".weight";
  }
  // W + strength x sum(alpha / r x up @ down + diff) for one release key, in double.
  at::Tensor merged(const at::Tensor& w, const std::string& key, double strength) const {
    at::Tensor acc = w.to(at::kDouble).clone();
    for (const TestLoraPair& p : pairs) {
      if (weight_key(p.block_module, p.block) != key) continue;
      const double s = p.alpha ? *p.alpha / static_cast<double>(p.down.size(0)) : 1.0;
      acc += strength * s * at::matmul(p.up.to(at::kDouble), p.down.to(at::kDouble));
    }
    for (const TestLoraDiff& d : diffs) {
      const std::string k = d.bias ? "blocks." + std::to_string(d.block) + "." + d.block_module + ".bias"
                                   : weight_key(d.block_module, d.block);
      if (k == key) acc += strength * d.value.to(at::kDouble).reshape(acc.sizes());
    }
    return acc;
  }
};

// Low-rank pairs on a few GEMMs of every block, diff_b on a bias, diffs on norm3 and modulation.
inline TestLora random_lora(const WanConfig& cfg, std::uint64_t seed, double magnitude = 0.1) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  auto randn = [&](std::vector<int64_t> s) { return at::randn(s, g, at::TensorOptions().dtype(at::kFloat)) * magnitude; };
  const int64_t D = cfg.dim, F = cfg.ffn_dim;
  TestLora l;
  for (int64_t b = 0; b < cfg.num_layers; ++b) {
    l.pairs.push_back({"self_attn.q", b, randn({4, D}), randn({D, 4}), 2.0});
    l.pairs.push_back({"cross_attn.o", b, randn({3, D}), randn({D, 3}), std::nullopt});
    l.pairs.push_back({"ffn.0", b, randn({4, D}), randn({F, 4}), 8.0});
    l.pairs.push_back({"ffn.2", b, randn({2, F}), randn({D, 2}), 1.0});
    l.diffs.push_back({"self_attn.q", b, true, randn({D})});
    l.diffs.push_back({"norm3", b, false, randn({D})});
    l.diffs.push_back({"modulation", b, false, randn({1, 6, D})});
  }
  return l;
}

// The module's name in a layout (written out here, not taken from wand's key map).
inline std::string layout_module(TestLayout layout, const std::string& m, int64_t block) {
  static const std::map<std::string, std::string> kDiffusers = {
      {"self_attn.q", "attn1.to_q"}, {"cross_attn.o", "attn2.to_out.0"}, {"ffn.0", "ffn.net.0.proj"},
      {"ffn.2", "ffn.net.2"},        {"norm3", "norm2"},                 {"modulation", "scale_shift_table"}};
  const std::string b = std::to_string(block);
  switch (layout) {
    case TestLayout::kDiffusers: return "transformer.blocks." + b + "." + kDiffusers.at(m);
    case TestLayout::kComfy: return "diffusion_model.blocks." + b + "." + m;
    case TestLayout::kKohya: {
      std::string k = "blocks." + b + "." + m;
      for (char& c : k) {
        if (c == '.') c = '_';
      }
      return "lora_unet_" + k;
    }
  }
  return "";
}

inline std::map<std::string, at::Tensor> lora_tensors(const TestLora& l, TestLayout layout, at::ScalarType dtype = at::kFloat) {
  std::map<std::string, at::Tensor> t;
  const bool d = layout == TestLayout::kDiffusers;
  for (const TestLoraPair& p : l.pairs) {
    const std::string m = layout_module(layout, p.block_module, p.block);
    t[m + (d ? ".lora_A.weight" : ".lora_down.weight")] = p.down.to(dtype);
    t[m + (d ? ".lora_B.weight" : ".lora_up.weight")] = p.up.to(dtype);
    if (p.alpha) t[m + ".alpha"] = at::full({}, *p.alpha, at::TensorOptions().dtype(at::kFloat));
  }
  for (const TestLoraDiff& x : l.diffs) {
    const std::string m = layout_module(layout, x.block_module, x.block);
    t[m + (x.bias ? (d ? ".lora_B.bias" : ".diff_b") : ".diff")] = x.value.to(dtype);
  }
  return t;
}

inline void write_lora(const TestLora& l, TestLayout layout, const std::string& path, at::ScalarType dtype = at::kFloat) {
  save_safetensors(path, lora_tensors(l, layout, dtype));
}

}  // namespace wand::model::testing
