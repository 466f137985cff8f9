// One DiT expert in one .safetensors file (ComfyUI's repackaged files, e.g.
// wan2.2_t2v_high_noise_14B_fp16.safetensors): release key names, bare or under a
// "model.diffusion_model." / "diffusion_model." prefix, no config.json. LibTorch-free
// (wand_model_facts): the model (CheckpointDir, WanGenerator) and the planner
// (scheduler/plan/model_shape.h) read the same config from the same header.
//
//   SingleFileExpert e = read_single_file_expert("/m/wan2.2_t2v_high_noise_14B_fp16.safetensors", "t2v");
//   e.config.variant;   // "t2v-A14B"
//   e.prefix;           // "" or "model.diffusion_model." (file key = prefix + release key)
//
// Note [Single-file config]: the file carries no config, and the shapes do not give every
// field (the head count is not in any shape). So the config is the preset of the model type
// (t2v-A14B, i2v-A14B, ti2v-5B; the tiny presets for test fixtures) whose whole key set and
// shapes the file matches; the DiT then checks the file against it key by key
// (CheckpointDir). A file of another model family (Wan2.1, another DiT) matches none and is
// refused naming the file and the first key that differs from the model type's preset.
// fp8 files (F8_E4M3 tensors, "scale_weight" keys; issue 17 item 2) are refused naming the file
// and the key: refuse_unread_weights() is the one check, to be relaxed when the weight store
// stores fp8.
// Errors: Error(kModelFormat) naming the file and the key. Free functions; any thread.
#pragma once

#include <filesystem>
#include <string>

#include "model/safetensors_header.h"
#include "model/wan_config.h"

namespace wand::model::formats {

struct SingleFileExpert {
  WanConfig config;
  std::string prefix;  // file key = prefix + release key
};

// model_type: "t2v" | "i2v" | "ti2v" (the manifest's), checked against the file's shapes; ""
// tries every model type (the DiT's in_channels tell them apart).
SingleFileExpert read_single_file_expert(const std::filesystem::path& file, const std::string& model_type = "");

// Throws naming the file and the key when a tensor is stored in a dtype the DiT does not read
// (F8_*: fp8, issue 17 item 2) or the file carries fp8 scales.
void refuse_unread_weights(const SafetensorsHeader& h);

}  // namespace wand::model::formats
