// wand-make-model --preset NAME --out DIR [--seed N] [--dtype fp32|bf16|fp16|fp8|fp8-row|fp8-plain] [--share-experts]
//                 [--max-shard-bytes N] [--dit-only] [--layout release|diffusers|comfyui]
// Writes a model directory in the exact release layout with random weights
// (see model/make_model/make_model.h).
#include <cstdio>
#include <cstring>
#include <sys/resource.h>
#include <string>

#include "common/error.h"
#include "model/make_model/make_model.h"

namespace {
void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: wand-make-model --preset NAME --out DIR [--seed N] [--dtype fp32|bf16|fp16|fp8|fp8-row|fp8-plain]\n"
               "                       [--share-experts] [--max-shard-bytes N] [--dit-only]\n"
               "                       [--layout release|diffusers|comfyui]\n"
               "presets: tiny-t2v tiny-i2v tiny-ti2v t2v-A14B i2v-A14B ti2v-5B\n"
               "  --dtype          stored DiT dtype (default fp32, like the release); fp8: the block linear\n"
               "                   weights in fp8_e4m3fn with per-tensor scales and the scaled_fp8 marker\n"
               "                   (ComfyUI's fp8_scaled), the rest bf16; fp8-row: one scale a row;\n"
               "                   fp8-plain: no scales\n"
               "  --share-experts  A14B: low_noise_model's index points at high_noise_model's shards\n"
               "  --dit-only       write only the DiT expert(s) and configs\n"
               "  --layout         release (default); diffusers: model_index.json, transformer/ (+\n"
               "                   transformer_2/), text_encoder/, tokenizer/, vae/ in diffusers' naming;\n"
               "                   comfyui: one .safetensors per expert, umT5 and VAE files, wand-model.json.\n"
               "                   The same weights per seed in every layout\n");
}
}  // namespace

int main(int argc, char** argv) {
  wand::model::make::MakeModelOptions o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw wand::Error(wand::ErrorCode::kBadRequest, a + " needs a value");
        return argv[++i];
      };
      if (a == "--preset") {
        o.preset = value();
      } else if (a == "--out") {
        o.out = value();
      } else if (a == "--seed") {
        o.seed = std::stoull(value());
      } else if (a == "--dtype") {
        const std::string d = value();
        if (d == "fp32") o.dtype = at::kFloat;
        else if (d == "bf16") o.dtype = at::kBFloat16;
        else if (d == "fp16") o.dtype = at::kHalf;
        else if (d == "fp8" || d == "fp8-row" || d == "fp8-plain") {
          o.dtype = at::kBFloat16;
          o.fp8 = d == "fp8" ? "scaled" : (d == "fp8-row" ? "scaled-row" : "plain");
        } else {
          throw wand::Error(wand::ErrorCode::kBadRequest,
                            "--dtype must be fp32, bf16, fp16, fp8, fp8-row or fp8-plain, got '" + d + "'");
        }
      } else if (a == "--share-experts") {
        o.share_experts = true;
      } else if (a == "--max-shard-bytes") {
        o.max_shard_bytes = std::stoull(value());
      } else if (a == "--layout") {
        o.layout = value();
      } else if (a == "--dit-only") {
        o.dit_only = true;
      } else if (a == "--help" || a == "-h") {
        usage(stdout);
        return 0;
      } else {
        std::fprintf(stderr, "wand-make-model: unexpected argument '%s'\n", a.c_str());
        usage(stderr);
        return 2;
      }
    }
    if (o.preset.empty() || o.out.empty()) {
      usage(stderr);
      return 2;
    }
    wand::model::make::make_model(o);
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::printf("wand-make-model: wrote %s to %s (peak rss %.1f MiB)\n", o.preset.c_str(), o.out.c_str(),
                static_cast<double>(ru.ru_maxrss) / 1024.0);
    return 0;
  } catch (const wand::Error& e) {
    std::fprintf(stderr, "wand-make-model: %s: %s\n", wand::error_code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wand-make-model: %s\n", e.what());
    return 1;
  }
}
