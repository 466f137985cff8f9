// wand-make-model: a model directory in the exact release (or diffusers) layout with random weights.
//
//   MakeModelOptions o;
//   o.preset = "tiny-t2v"; o.out = "/tmp/m"; o.seed = 1;
//   make_model(o);   // high_noise_model/, low_noise_model/, T5 .pth, tokenizer, VAE .pth
//
// DiT experts are written tensor by tensor (SafetensorsWriter), shard by shard,
// in diffusers save_pretrained's layout: shards of at most max_shard_bytes in
// state-dict order (tiny presets: 2 shards), header metadata {"format": "pt"},
// diffusion_pytorch_model.safetensors.index.json with sorted keys and indent 2,
// config.json with _class_name WanModel. Never more than one tensor in memory.
// Random init as the golden README: weights N(0, 1/fan_in), biases N(0, 0.05^2),
// norm weights 1 + N(0, 0.1^2), modulations N(0, 1/dim); each tensor from its
// own generator seeded by (seed, expert, tensor index), so output is reproducible.
// Single caller; blocking.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model/wan_config.h"

namespace wand::model::make {

struct MakeModelOptions {
  std::string preset;                 // tiny-t2v | tiny-i2v | tiny-ti2v | t2v-A14B | i2v-A14B | ti2v-5B
  std::filesystem::path out;
  std::uint64_t seed = 0;
  at::ScalarType dtype = at::kFloat;  // stored DiT dtype: fp32 (release), bf16 or fp16
  // "release" or "diffusers": transformer/ (+ transformer_2/) in WanTransformer3DModel naming,
  // model_index.json, text_encoder/ (transformers naming), tokenizer/, vae/ (diffusers naming):
  // Note [Diffusers parts]. "comfyui": one .safetensors per expert (release names), the umT5
  // (transformers naming) and VAE (release names) files, google/umt5-xxl/, wand-model.json
  // (Note [Model manifest] in model/formats/model_layout.h).
  // The same seed gives the same weights in every layout.
  std::string layout = "release";
  bool share_experts = false;         // A14B: low_noise_model's index points at high_noise_model's shards
  std::uint64_t max_shard_bytes = 0;  // 0: 10 GB (diffusers default); tiny presets: half the expert
  bool dit_only = false;              // skip the T5 / VAE / tokenizer parts
  // fp8 weights (--dtype fp8*, Note [fp8 stored dtype]): "" none; "scaled" ComfyUI's
  // fp8_scaled (the "scaled_fp8" marker and a per-tensor fp32 "<layer>.scale_weight" of
  // shape []), "scaled-row" (one scale a row, shape [R]) or "plain" (fp8_e4m3fn codes of
  // the weights themselves, no scales). The block linear weights are quantized from their
  // bf16 rounding (as from a bf16 release); every other tensor is written in `dtype`.
  std::string fp8;
};

void make_model(const MakeModelOptions& o);

// Writes one DiT expert directory (config.json, shards, index). Returns total bytes.
// diffusers: keys, config.json and state-dict order of WanTransformer3DModel
// (model/formats/diffusers_keys.h); each tensor's values are those of its release key.
// fp8: MakeModelOptions::fp8.
std::uint64_t write_dit_expert(const std::filesystem::path& dir, const WanConfig& cfg, at::ScalarType dtype,
                               std::uint64_t seed, std::uint64_t max_shard_bytes, bool diffusers = false,
                               const std::string& fp8 = "");
// Writes an expert directory whose index points at another expert's shards
// (relative paths "../<other>/<shard>"), plus its config.json.
void write_shared_expert(const std::filesystem::path& dir, const std::filesystem::path& shared_from,
                         const WanConfig& cfg);
// Shard assignment of save_pretrained (huggingface_hub.split_torch_state_dict_into_shards):
// tensor byte sizes in state-dict order -> list of shards, each a list of indices.
std::vector<std::vector<size_t>> plan_shards(const std::vector<std::uint64_t>& sizes, std::uint64_t max_shard_bytes);
// One tensor of the random init (deterministic in seed and index).
at::Tensor random_dit_tensor(const std::string& name, const std::vector<int64_t>& shape, int64_t dim,
                             std::uint64_t seed);

}  // namespace wand::model::make
