// Weight storage: in which dtype the weight store holds each DiT block tensor (the host tier,
// the PCIe transfers and the device slots carry these bytes). LibTorch-free (library
// wand_model_facts): the weight store (scheduler/exec/weight_store.h), the planner
// (scheduler/plan/model_shape.h) and the daemon config all decide through the one function
// below, so `wanctl plan` counts the bytes the store holds.
//
//   WeightsDtype w = parse_weights_dtype("fp8", "models.a14b.weights_dtype");
//   StoredAs s = block_tensor_storage("blocks.3.ffn.0.weight", 2, "BF16", w);   // kFp8
//   block_tensor_storage("blocks.3.ffn.0.bias", 1, "BF16", w);                  // kRun
//
// Note [fp8 stored dtype]: only the large linear weights of the DiT blocks go fp8 (a block
// tensor whose name ends in ".weight" and that has two dimensions: self/cross-attention
// q, k, v, o and ffn.0, ffn.2 in the release naming, attn1/attn2 to_q... and ffn.net.* in the
// diffusers naming: the same tensors), as ComfyUI's fp8_scaled files do. Biases, the qk
// RMSNorm weights, norm3 and the modulation stay in their dtype (1-D or 3-D), and so does
// everything outside the blocks (patch/text/time embeddings, head): WanDit owns those and
// reads an fp8 one dequantized (model/fp8.h). The decision:
//   - kRun ("run"): every tensor in the run dtype (an fp8 file is dequantized once at pack);
//   - kAuto (the default): a tensor the file stores as F8_E4M3 stays fp8 (read straight,
//     with its scale) when it is eligible; everything else in the run dtype;
//   - kFp8 ("fp8"): as kAuto, and every eligible bf16/fp16/fp32 tensor is quantized once at
//     pack (per-row absmax scales: Note [fp8 scale granularity], model/fp8.h).
// An fp8 tensor costs 1 byte a weight plus its scales (4 bytes a row or a tensor, fp32).
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>

namespace wand::model {

enum class WeightsDtype { kAuto, kFp8, kRun };
// "auto" | "fp8" | "run"; throws Error(kConfig) naming `where` for anything else.
WeightsDtype parse_weights_dtype(const std::string& s, const std::string& where);
const char* weights_dtype_name(WeightsDtype w);

// How the scales of a tensor quantized by wand are laid out (Note [fp8 scale granularity]).
enum class Fp8Scaling { kRow, kTensor };
const char* fp8_scaling_name(Fp8Scaling s);

enum class StoredAs { kRun, kFp8 };

// True for the tensors that may be held in fp8 (Note [fp8 stored dtype]).
bool fp8_eligible(const std::string& key, std::size_t ndim);

// The one decision (Note [fp8 stored dtype]). key: the tensor's name (release or diffusers
// naming); file_dtype: its safetensors dtype string ("BF16", "F8_E4M3", ...).
StoredAs block_tensor_storage(const std::string& key, std::size_t ndim, const std::string& file_dtype, WeightsDtype w);

// Auxiliary keys of fp8_scaled files (ComfyUI): "<layer>.scale_weight" (the dequantization
// scale of "<layer>.weight"), "<layer>.scale_input" (an activation scale for fp8 matmuls,
// unused by wand) and the "scaled_fp8" marker. They are not model weights.
constexpr const char* kFp8MarkerKey = "scaled_fp8";
bool is_fp8_scale_key(const std::string& key);      // ends in ".scale_weight"
bool is_fp8_aux_key(const std::string& key);        // scale_weight, scale_input or the marker
// "<layer>.weight" -> "<layer>.scale_weight" (empty when key does not end in ".weight").
std::string fp8_scale_key_of(const std::string& weight_key);
// "<layer>.scale_weight" -> "<layer>.weight".
std::string fp8_weight_key_of(const std::string& scale_key);

}  // namespace wand::model
