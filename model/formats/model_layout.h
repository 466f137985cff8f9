// ModelLayout: which checkpoint layout a Wan2.2 model directory is in and where its parts
// are. The one detector behind the model (WanGenerator, CheckpointDir's callers) and the
// planner (scheduler/plan/model_shape.h); LibTorch-free (library wand_model_facts).
//
//   ModelLayout l = detect_model_layout("/models/Wan2.2-T2V-A14B-Diffusers");
//   l.kind;                         // LayoutKind::kDiffusers
//   l.experts[0].dir;               // .../transformer   (high noise; [1]: transformer_2, low noise)
//   l.boundary_ratio;               // 0.875, from model_index.json
//   l.vae_file("t2v");              // .../Wan2.1_VAE.pth (Note [Diffusers parts])
//
// Layouts:
//  - release (Wan-AI/Wan2.2-T2V-A14B, ...): high_noise_model/ + low_noise_model/ (A14B) or
//    config.json + shards at the root (TI2V-5B); models_t5_umt5-xxl-enc-bf16.pth,
//    google/umt5-xxl/, Wan2.1_VAE.pth or Wan2.2_VAE.pth at the root.
//  - diffusers (Wan-AI/Wan2.2-T2V-A14B-Diffusers, ...): model_index.json (_class_name
//    WanPipeline / WanImageToVideoPipeline, boundary_ratio), transformer/ (+ transformer_2/
//    for A14B) as WanTransformer3DModel shards (model/formats/diffusers_keys.h),
//    text_encoder/, tokenizer/, vae/, scheduler/.
//
// Note [Diffusers parts]: of a diffusers folder wand reads the DiT experts (transformer/,
// transformer_2/) and model_index.json. Its text_encoder/ (UMT5EncoderModel, transformers
// naming) and vae/ (AutoencoderKLWan, diffusers naming) are not read yet; the release files
// stand in for them, placed at the folder's root: models_t5_umt5-xxl-enc-bf16.pth and
// google/umt5-xxl/ (from any Wan2.2 release repository: the same umT5 for all three models),
// Wan2.1_VAE.pth (A14B) or Wan2.2_VAE.pth (TI2V-5B). When one is missing, the load error
// names it and says so (missing_part_hint). docs/checkpoints.md tells users the same.
//
// Errors: Error(kModelFormat) naming the directory or the file and the missing part.
// Plain values and free functions; any thread.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace wand::model::formats {

enum class LayoutKind { kRelease, kDiffusers };

const char* layout_name(LayoutKind k);  // "release" | "diffusers"

struct ExpertLocation {
  std::string name;            // "high_noise_model", "low_noise_model", "transformer", "transformer_2", "" (root)
  std::filesystem::path dir;   // holds config.json and the shards (or their index)
};

struct ModelLayout {
  LayoutKind kind = LayoutKind::kRelease;
  std::filesystem::path dir;
  std::vector<ExpertLocation> experts;     // high noise first; one for a single-model (ti2v) dir
  std::optional<double> boundary_ratio;    // diffusers model_index.json; the release has none

  bool two_experts() const { return experts.size() == 2; }
  // The umT5 checkpoint and tokenizer dir (release files; Note [Diffusers parts]).
  std::filesystem::path t5_file() const;
  std::filesystem::path tokenizer_dir() const;
  // The VAE checkpoint for a model type: Wan2.2_VAE.pth for ti2v, else Wan2.1_VAE.pth.
  std::filesystem::path vae_file(const std::string& model_type) const;
  // "" for the release layout; for a diffusers folder, why a release file is needed there
  // (part: "text encoder" or "vae"), to append to a "missing FILE" error.
  std::string missing_part_hint(const std::string& part) const;
};

constexpr const char* kModelIndexName = "model_index.json";

// Whether `dir` looks like a Wan2.2 model directory of some layout (no exception): the release
// layout with its VAE file, or a diffusers folder with model_index.json and transformer/config.json.
bool probe_model_layout(const std::filesystem::path& dir);

// The layout of `dir` and where its experts are. Checks that the expert directories exist
// with a config.json and, for a diffusers folder, that model_index.json is a Wan pipeline
// and names transformer (and transformer_2 when present); reads no weights.
ModelLayout detect_model_layout(const std::filesystem::path& dir);

}  // namespace wand::model::formats
