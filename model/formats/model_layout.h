// ModelLayout: which checkpoint layout a Wan2.2 model directory is in and where its parts
// are. The one detector behind the model (WanGenerator, CheckpointDir's callers) and the
// planner (scheduler/plan/model_shape.h); LibTorch-free (library wand_model_facts).
//
//   ModelLayout l = detect_model_layout("/models/Wan2.2-T2V-A14B-Diffusers");
//   l.kind;                         // LayoutKind::kDiffusers
//   l.experts[0].dir;               // .../transformer   (high noise; [1]: transformer_2, low noise)
//   l.boundary_ratio;               // 0.875, from model_index.json
//   l.text_encoder();               // {kTransformers, .../text_encoder/model-0000N-of-0000M.safetensors}
//   l.vae("t2v");                   // {kDiffusers, .../vae/diffusion_pytorch_model.safetensors}
//   l.tokenizer_dir();              // .../tokenizer (holds spiece.model)
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
// Note [Diffusers parts]: of a diffusers folder wand reads every part it needs:
// model_index.json, the DiT experts (transformer/, transformer_2/), text_encoder/
// (UMT5EncoderModel shards in the transformers naming: transformers_umt5_keys.h), tokenizer/
// (its spiece.model, the same SentencePiece model as google/umt5-xxl/) and vae/
// (AutoencoderKLWan in the diffusers naming: diffusers_vae_keys.h). scheduler/ is not needed
// (wand has its own samplers). A folder may instead hold the release files at its root
// (models_t5_umt5-xxl-enc-bf16.pth and google/umt5-xxl/, Wan2.1_VAE.pth or Wan2.2_VAE.pth),
// the stand-ins of the first diffusers support: a part's own folder wins when it holds its
// files, else the release file is used; when neither is there the error names both
// (missing_part_hint). docs/checkpoints.md tells users the same.
//
// Errors: Error(kModelFormat) naming the directory or the file and the missing part.
// Plain values and free functions; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace wand::model::formats {

enum class LayoutKind { kRelease, kDiffusers, kComfyUI };

const char* layout_name(LayoutKind k);  // "release" | "diffusers" | "comfyui"

struct ExpertLocation {
  std::string name;            // "high_noise_model", "low_noise_model", "transformer", "transformer_2", "" (root),
                               // "high_noise", "low_noise", "dit" (comfyui)
  std::filesystem::path dir;   // holds config.json and the shards (or their index); comfyui: the
                               // expert's single .safetensors file (model/formats/single_file.h)
  bool single_file() const;    // dir is a file
};

// How a part's tensors are named on disk (the key map that serves them under wand's names).
enum class PartNaming {
  kRelease,       // the release .pth's own names
  kTransformers,  // umT5 as transformers' UMT5EncoderModel (model/formats/transformers_umt5_keys.h)
  kDiffusers,     // the VAE as diffusers' AutoencoderKLWan (model/formats/diffusers_vae_keys.h)
};
const char* part_naming_name(PartNaming n);  // "release" | "transformers" | "diffusers"

// Where one part's checkpoint is: a release .pth, or the safetensors files of a folder.
struct PartFiles {
  std::string part;                          // "text encoder" | "vae"
  PartNaming naming = PartNaming::kRelease;
  std::vector<std::filesystem::path> files;  // sorted; one for a .pth
  std::filesystem::path where;               // the .pth, or the folder (for messages)
  // Sum of the file sizes (what the planner streams / holds); throws kModelFormat naming a
  // file that vanished.
  std::uint64_t bytes() const;
};

struct ModelLayout {
  LayoutKind kind = LayoutKind::kRelease;
  std::filesystem::path dir;
  std::vector<ExpertLocation> experts;     // high noise first; one for a single-model (ti2v) dir
  std::optional<double> boundary_ratio;    // diffusers model_index.json, comfyui manifest; the release has none
  // comfyui (Note [Model manifest]): the manifest's model type and part files.
  std::string model_type;
  std::filesystem::path manifest_t5, manifest_vae, manifest_tokenizer;

  bool two_experts() const { return experts.size() == 2; }
  // The umT5 checkpoint: the release .pth, or (diffusers) text_encoder/'s safetensors files
  // (Note [Diffusers parts]). Throws Error(kModelFormat) naming what is missing.
  PartFiles text_encoder() const;
  // The tokenizer dir holding spiece.model: google/umt5-xxl/, (diffusers) tokenizer/, (comfyui)
  // the manifest's. A diffusers folder with neither throws Error(kModelFormat) naming both.
  std::filesystem::path tokenizer_dir() const;
  // The VAE for a model type: Wan2.2_VAE.pth for ti2v, else Wan2.1_VAE.pth; (diffusers) vae/'s
  // safetensors. Throws Error(kModelFormat) naming what is missing.
  PartFiles vae(const std::string& model_type) const;
  // The release file names (for messages and callers that only know the release layout).
  std::filesystem::path t5_file() const;
  std::filesystem::path vae_file(const std::string& model_type) const;
  // "" for the release layout; for a diffusers folder, which folder or release file provides
  // the part (part: "text encoder", "tokenizer" or "vae"), to append to a "missing" error.
  std::string missing_part_hint(const std::string& part) const;
};

constexpr const char* kModelIndexName = "model_index.json";
constexpr const char* kManifestName = "wand-model.json";

// Note [Model manifest]: a model made of single files (ComfyUI's repackaged checkpoints) is a
// directory with wand-model.json naming them, paths relative to that directory or absolute
// (so several models can share one umT5 and VAE file):
//   {"format": "comfyui", "model_type": "t2v",                  // t2v | i2v | ti2v
//    "high_noise": "wan2.2_t2v_high_noise_14B_fp16.safetensors", // A14B: both experts
//    "low_noise": "wan2.2_t2v_low_noise_14B_fp16.safetensors",
//    "dit": "wan2.2_ti2v_5B_fp16.safetensors",                   // TI2V-5B: the one model instead
//    "text_encoder": "umt5_xxl_fp16.safetensors",               // transformers naming, or the release .pth
//    "tokenizer": "google/umt5-xxl",                            // a folder with spiece.model
//    "vae": "wan_2.1_vae.safetensors",                          // release or diffusers naming, or the .pth
//    "boundary": 0.875}                                         // optional; default: the model type's
// An expert file holds release key names, bare or under "model.diffusion_model." /
// "diffusion_model."; its config comes from its shapes (Note [Single-file config]). The
// naming of the umT5 and VAE files is read from their keys. Every missing file or field is
// refused naming the manifest and the field.

// Whether `dir` looks like a Wan2.2 model directory of some layout (no exception): the release
// layout with its VAE file, or a diffusers folder with model_index.json and transformer/config.json.
bool probe_model_layout(const std::filesystem::path& dir);

// The layout of `dir` and where its experts are. Checks that the expert directories exist
// with a config.json and, for a diffusers folder, that model_index.json is a Wan pipeline
// and names transformer (and transformer_2 when present); reads no weights.
ModelLayout detect_model_layout(const std::filesystem::path& dir);

}  // namespace wand::model::formats
