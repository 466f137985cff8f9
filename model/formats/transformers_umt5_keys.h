// umT5 in the transformers naming (UMT5EncoderModel: the diffusers folder's text_encoder/,
// ComfyUI's umt5_xxl_*.safetensors) -> the release names the T5 encoder reads
// (models_t5_umt5-xxl-enc-bf16.pth, wan/modules/t5.py). LibTorch-free (wand_model_facts).
//
//   wand_umt5_key("encoder.block.3.layer.1.DenseReluDense.wi_0.weight");  // "blocks.3.ffn.gate.0.weight"
//   wand_umt5_key("decoder.block.0...");                                  // nullopt: not an encoder key
//
// Note [umT5 transformers keys]: per layer N, layer.0 is self-attention and layer.1 the
// gated-GELU FFN; umT5 has a relative position table in every layer (not only layer 0 as
// T5 has). The values are the same tensors (no transposes): shared / embed_tokens ->
// token_embedding, layer.0.layer_norm -> norm1, SelfAttention.{q,k,v,o} -> attn.{q,k,v,o},
// SelfAttention.relative_attention_bias -> pos_embedding.embedding, layer.1.layer_norm ->
// norm2, DenseReluDense.wi_0 -> ffn.gate.0 (the GELU branch), wi_1 -> ffn.fc1, wo ->
// ffn.fc2, encoder.final_layer_norm -> norm. The tied embedding may be stored as
// "shared.weight", "encoder.embed_tokens.weight" or both.
// model::open_part (model/formats/part_sources.h) applies this map through a RenamedSource
// for the resident T5Encoder and the daemon's streamed umT5 (scheduler/exec/t5_stream.h),
// over a diffusers text_encoder/ or a ComfyUI umt5_xxl_*.safetensors.
// Free functions; any thread.
#pragma once

#include <optional>
#include <string>

namespace wand::model::formats {

// The release key of a transformers umT5 encoder key; nullopt for a key that is not one.
std::optional<std::string> wand_umt5_key(const std::string& transformers_key);
// The transformers key of a release key (embedding: "shared.weight"); nullopt when none.
std::optional<std::string> transformers_umt5_key(const std::string& wand_key);

}  // namespace wand::model::formats
