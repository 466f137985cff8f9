// LoRA files for the Wan2.2 DiT: the one place that knows the key layouts in use and maps each
// to the release (WanModel) names. LibTorch-free (library wand_model_facts): the daemon's
// config check reads the same files the same way as the loader (model/lora.h).
//
//   SafetensorsHeader h = read_safetensors_header("/srv/loras/distill-high.safetensors");
//   LoraIndex ix = index_lora(h, cfg);          // throws Error(kModelFormat) naming file and key
//   for (const LoraModule& m : ix.modules) m.module, m.weight_key, m.rank, m.down_key, ...
//
// Note [LoRA key layouts]: three spellings of the same modules are in use (the references are
// diffusers' loaders/lora_conversion_utils.py with WanLoraLoaderMixin, and ComfyUI's
// comfy/lora.py / lora_convert.py):
//  - diffusers / PEFT: "transformer." + the diffusers module name (Note [Diffusers DiT keys]:
//    blocks.N.attn1.to_q) + ".lora_A.weight" (down, [r, in]) / ".lora_B.weight" (up, [out, r]),
//    optionally ".alpha", and ".lora_B.bias" (a bias delta);
//  - ComfyUI / musubi-tuner: "diffusion_model." + the release module name (blocks.N.self_attn.q)
//    + ".lora_down.weight" / ".lora_up.weight" / ".alpha" (lora_A / lora_B are accepted too),
//    and full deltas ".diff" (of the module's weight, or of a parameter such as
//    blocks.N.modulation) and ".diff_b" (of its bias): the distill LoRAs carry these for the
//    norms and biases;
//  - kohya: "lora_unet_" + the release module name with '.' written '_'
//    (lora_unet_blocks_N_self_attn_q) + the ComfyUI suffixes.
// Keys without a prefix are read as release names first, then as diffusers names. Every
// layout maps to the release weight key the delta changes ("blocks.3.self_attn.q.weight"),
// so the merge (model/lora.h, Note [LoRA merge]) is written once. A module with down/up
// contributes strength x (alpha / rank) x up @ down (alpha absent: alpha = rank, scale 1),
// diff strength x diff, diff_b strength x diff_b. diffusers drops the norm diffs (it
// assumes they are zero, lora_conversion_utils.py) and ignores other diffs; wand applies
// them, as ComfyUI does, so the two agree on files whose diffs are absent or zero.
// Free functions and plain values; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/safetensors_header.h"
#include "model/wan_config.h"

namespace wand::model::formats {

enum class LoraLayout { kDiffusers, kComfy, kKohya };
const char* lora_layout_name(LoraLayout l);  // "diffusers", "comfyui", "kohya"

enum class LoraPart { kDown, kUp, kAlpha, kDiff, kDiffBias };

// One key of a LoRA file, classified: its layout, the release module it names (known or
// not) and the part. nullopt: the key has no LoRA suffix (not a LoRA key at all).
struct LoraKeyInfo {
  LoraLayout layout = LoraLayout::kComfy;
  std::string module;     // release module, e.g. "blocks.3.self_attn.q", "blocks.3.modulation"
  bool known = false;     // the model has this module
  LoraPart part = LoraPart::kDown;
};

// The release module names of a model and their spellings in each layout.
class LoraKeyMap {
 public:
  explicit LoraKeyMap(const WanConfig& cfg);
  std::optional<LoraKeyInfo> classify(const std::string& file_key) const;
  // The release key a low-rank or diff delta changes ("<module>.weight", or the module itself
  // for a parameter such as blocks.N.modulation); empty when the module has none.
  std::string weight_key(const std::string& module) const;
  std::string bias_key(const std::string& module) const;  // "<module>.bias" or empty
  // Shape of a release key (it must be one).
  const std::vector<int64_t>& shape(const std::string& release_key) const;

 private:
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors_;  // release key -> shape
  std::vector<std::pair<std::string, std::string>> modules_;          // sorted: release module -> weight key
  std::vector<std::pair<std::string, std::string>> diffusers_;        // sorted: diffusers module -> release module
  std::vector<std::pair<std::string, std::string>> kohya_;            // sorted: kohya module -> release module
};

// One module a LoRA file changes, with the file keys that change it.
struct LoraModule {
  std::string module;       // release module name
  std::string weight_key;   // release key of the changed weight ("" when only a bias delta)
  std::string bias_key;     // release key of the bias (when diff_b is given)
  int64_t block = -1;       // blocks.N: N; -1 outside the blocks
  int64_t rank = 0;         // 0: no low-rank pair
  std::string down_key, up_key, alpha_key, diff_key, diff_b_key;  // file keys ("" when absent)
};

struct LoraIndex {
  std::string path;
  LoraLayout layout = LoraLayout::kComfy;   // of the first LoRA key
  std::vector<LoraModule> modules;          // by module name
  std::uint64_t tensor_bytes = 0;           // bytes of the LoRA tensors in the file
  int64_t max_rank = 0;
};

// Classifies every key of a LoRA file against the model and checks it (Note [LoRA key
// layouts]): each refusal is Error(kModelFormat) naming the file and the key: no key with a
// LoRA suffix for this model ("no key matches"), a key for a module the model does not have
// (another family, or more blocks), a down without its up (or the reverse), a shape that does
// not match the module (down [r, in], up [out, r], diff = the weight, diff_b = the bias, alpha
// one number), a rank above the module's sides, a target outside the DiT blocks (patch, text,
// time, head: wand applies LoRAs to the streamed blocks only). Keys without a LoRA suffix are
// refused too (an unknown key layout).
LoraIndex index_lora(const model::SafetensorsHeader& h, const WanConfig& cfg);

}  // namespace wand::model::formats
