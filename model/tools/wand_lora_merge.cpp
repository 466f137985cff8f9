// wand-lora-merge EXPERT_DIR --lora FILE[:STRENGTH] ... --out OUT.safetensors [--dtype fp32|bf16]
// Writes the block tensors of one DiT expert (EXPERT_DIR: config.json + shards, release or
// diffusers layout) that the LoRAs change, merged as a job merges them (model/lora.h, Note
// [LoRA merge]), under their release names, on the CPU. For comparisons with other LoRA
// loaders (bench/peers/lora_merge_diffusers.py); a test tool, never installed.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/lora.h"
#include "model/safetensors.h"

namespace {
constexpr const char* kUsage =
    "usage: wand-lora-merge EXPERT_DIR --lora FILE[:STRENGTH] [--lora ...] --out OUT.safetensors "
    "[--dtype fp32|bf16]\n";
}

int main(int argc, char** argv) {
  using namespace wand::model;
  std::string dir, out, dtype = "fp32";
  std::vector<std::pair<std::string, double>> loras;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--lora" && i + 1 < argc) {
      std::string v = argv[++i];
      double s = 1.0;
      const std::size_t colon = v.rfind(':');
      if (colon != std::string::npos && colon > 0 && v.find('/', colon) == std::string::npos) {
        char* end = nullptr;
        s = std::strtod(v.c_str() + colon + 1, &end);
        if (end == nullptr || *end != '\0') {
          std::fprintf(stderr, "wand-lora-merge: strength in '%s' is not a number\n", v.c_str());
          return 2;
        }
        v = v.substr(0, colon);
      }
      loras.emplace_back(v, s);
    } else if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else if (a == "--dtype" && i + 1 < argc) {
      dtype = argv[++i];
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (dir.empty()) {
      dir = a;
    } else {
      std::fprintf(stderr, "wand-lora-merge: unexpected argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (dir.empty() || out.empty() || loras.empty()) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  try {
    const RunDtype run = parse_run_dtype(dtype);
    CheckpointDir ck(dir);
    const WanDit dit = WanDit::load(ck, run, at::kCPU, /*load_blocks=*/true);
    std::vector<DitLora::Use> uses;
    for (const auto& [file, s] : loras) uses.push_back({LoraFile::read(file, ck.config()), s});
    auto lora = DitLora::build(uses, at::kCPU, run);
    std::map<std::string, at::Tensor> merged;
    for (int64_t b = 0; b < dit.num_layers(); ++b) {
      const DitBlockWeights& w = dit.block_weights(b);
      const DitBlockWeights m = lora->apply(b, w);
      const std::vector<std::string> names = DitBlockWeights::tensor_names(b);
      const auto before = w.fields();
      const auto after = m.fields();
      for (std::size_t f = 0; f < names.size(); ++f) {
        if (after[f]->data_ptr() != before[f]->data_ptr()) merged[names[f]] = after[f]->contiguous();
      }
    }
    save_safetensors(out, merged);
    std::printf("wand-lora-merge: wrote %zu merged tensors to %s\n", merged.size(), out.c_str());
    return 0;
  } catch (const wand::Error& e) {
    std::fprintf(stderr, "wand-lora-merge: %s: %s\n", wand::error_code_name(e.code()), e.what());
    return 1;
  }
}
