// The diffusers layout of Wan2.2 (Wan-AI/Wan2.2-{T2V,I2V}-A14B-Diffusers, Wan2.2-TI2V-5B-Diffusers):
// the one place that knows diffusers' names for the DiT (WanTransformer3DModel) and its
// config fields. LibTorch-free (library wand_model_facts): the model's CheckpointDir and the
// planner's ModelShape read the same files the same way.
//
//   WanConfig cfg = wan_config_from_diffusers(json, "transformer/config.json");
//   diffusers_dit_key("blocks.3.self_attn.q.weight");   // "blocks.3.attn1.to_q.weight"
//   for (auto& [file_key, wand_key] : diffusers_dit_key_map(cfg)) ...   // the strict key set
//
// Note [Diffusers DiT keys]: diffusers' scripts/convert_wan_to_diffusers.py renames the
// release WanModel keys by substring (TRANSFORMER_KEYS_RENAME_DICT) and keeps every tensor's
// shape and values (no transposes, no fused q/k/v): a diffusers DiT is the release DiT under
// other names. Per block: self_attn.{q,k,v,o} -> attn1.{to_q,to_k,to_v,to_out.0},
// cross_attn.* -> attn2.*, norm_q/norm_k kept, ffn.0 -> ffn.net.0.proj, ffn.2 -> ffn.net.2,
// modulation -> scale_shift_table, and norm3 (the cross-attention norm, the only LayerNorm
// with weights) -> norm2 (the script swaps norm2 and norm3 so that diffusers counts them in
// call order). Outside the blocks: text_embedding.{0,2} and time_embedding.{0,2} ->
// condition_embedder.{text,time}_embedder.linear_{1,2}, time_projection.1 ->
// condition_embedder.time_proj, head.head -> proj_out, head.modulation -> scale_shift_table,
// patch_embedding kept. transformer/ is the high-noise expert, transformer_2/ the low-noise
// one (WanPipeline: transformer while t >= boundary_ratio x 1000). The files may mix dtypes
// (diffusers keeps scale_shift_table, the time embedder and the norms in fp32,
// _keep_in_fp32_modules); each tensor is read in its stored dtype and converted to the run
// dtype, as for the release files.
// Free functions; any thread.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "model/wan_config.h"

namespace wand::model::formats {

constexpr const char* kDiffusersDitClass = "WanTransformer3DModel";

// The diffusers key of a release (WanModel) key; throws Error(kInternal) for a key that
// WanConfig never names (the table is incomplete: a bug, not bad input).
std::string diffusers_dit_key(const std::string& release_key);

// diffusers key -> release key, for every key of cfg.expected_tensors().
std::map<std::string, std::string> diffusers_dit_key_map(const WanConfig& cfg);

// True when a config.json is a diffusers WanTransformer3DModel config (its _class_name).
bool is_diffusers_dit_config(const nlohmann::json& j);

// The WanConfig of a diffusers transformer config.json: num_attention_heads x
// attention_head_dim -> dim, in_channels -> in_dim (and the model type: 16 t2v, 36 i2v,
// 48 ti2v), out_channels -> out_dim; text_len is not stored (512, the release value).
// Refuses, naming `where` and the field, what the Wan2.2 DiT does not have: an image
// embedder (image_dim, Wan2.1 i2v), added K/V projections (added_kv_proj_dim), another
// patch size, qk_norm or cross_attn_norm. Then the same checks as WanConfig::from_checkpoint.
WanConfig wan_config_from_diffusers(const nlohmann::json& j, const std::string& where);

// What diffusers' save_pretrained writes for this geometry: transformer/config.json
// (WanTransformer3DModel) and the folder's model_index.json (WanPipeline, or
// WanImageToVideoPipeline for i2v; boundary_ratio and transformer_2 for A14B,
// expand_timesteps for ti2v). Used by wand-make-model --layout diffusers.
nlohmann::json diffusers_dit_config_json(const WanConfig& cfg);
nlohmann::json diffusers_model_index_json(const WanConfig& cfg);

// A DiT config.json of either layout: WanModel (release) or WanTransformer3DModel (diffusers).
WanConfig wan_config_from_any(const nlohmann::json& j, const std::string& where);

}  // namespace wand::model::formats
