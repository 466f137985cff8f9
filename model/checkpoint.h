// CheckpointDir: one DiT expert directory, in the release layout (WanModel keys) or the
// diffusers layout (WanTransformer3DModel keys, Note [Diffusers DiT keys] in
// model/formats/diffusers_keys.h). Either way it serves the release key names: a
// diffusers directory is renamed at open, key by key, and info() keeps each tensor's
// shard path and byte offset, so the weight store still streams byte ranges of the
// shards directly.
//
//   CheckpointDir ck("Wan2.2-T2V-A14B/high_noise_model");
//   const WanConfig& cfg = ck.config();                 // from config.json
//   const TensorInfo& ti = ck.info("blocks.3.ffn.0.weight");  // shard path, offset, bytes
//   at::Tensor w = ck.load("blocks.3.ffn.0.weight", at::kBFloat16);
//
// Reads config.json and either diffusion_pytorch_model.safetensors.index.json
// (weight_map: key -> shard, shards may be given as relative paths such as
// "../high_noise_model/...", which is how wand-make-model --share-experts lets
// two experts share one set of shards) or a single
// diffusion_pytorch_model.safetensors. The key set and every shape are checked
// against the config at open: a missing, unexpected or mis-shaped key, or a
// truncated shard, throws wand::Error(kModelFormat) naming the file and the key (the
// file's own key name, and wand's when they differ). A stored dtype other than fp32,
// fp16, bf16 or fp8_e4m3fn is refused the same way. fp8 weights (F8_E4M3, with or
// without ComfyUI's "<layer>.scale_weight" scales, SafetensorsFile) load dequantized; the
// weight store reads their codes and scales (load_stored, load_scale) and keeps them fp8.
// Only shard headers are read at open; tensors are read one at a time by load()
// (never twice the model in memory).
// Owns the parsed shard headers. Immutable after construction: any thread.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "model/tensor_source.h"
#include "model/wan_config.h"

namespace wand::model {

class CheckpointDir : public TensorSource {
 public:
  static constexpr const char* kIndexName = "diffusion_pytorch_model.safetensors.index.json";
  static constexpr const char* kSingleName = "diffusion_pytorch_model.safetensors";

  explicit CheckpointDir(std::filesystem::path dir);

  const WanConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  // "release" or "diffusers" (the key naming of the shards).
  const char* layout() const { return diffusers_ ? "diffusers" : "release"; }
  // Shard files, as resolved absolute paths, in index order.
  std::vector<std::string> shard_paths() const;

  std::vector<std::string> names() const override { return names_; }
  bool contains(const std::string& name) const override { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const override;
  at::Tensor load(const std::string& name,
                  c10::optional<at::ScalarType> dtype = c10::nullopt) const override;
  std::string describe() const override { return dir_.string(); }

  // The stored elements (kByte codes for an fp8 tensor) and the scale ([] or [R, 1] fp32; 1
  // when the file has none): SafetensorsFile's, under wand's key names.
  at::Tensor load_stored(const std::string& name) const;
  bool has_scale(const std::string& name) const;
  at::Tensor load_scale(const std::string& name) const;

 private:
  const SafetensorsFile& shard_of(const std::string& name) const;

  std::filesystem::path dir_;
  WanConfig config_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;  // by resolved path
  std::map<std::string, const SafetensorsFile*> where_;              // key -> shard
  std::map<std::string, std::string> file_key_;                      // key -> the shard's name for it
  std::map<std::string, TensorInfo> info_;                           // key -> info under the key's name
  bool diffusers_ = false;
  std::vector<std::string> names_;                                   // expected order
};

}  // namespace wand::model
