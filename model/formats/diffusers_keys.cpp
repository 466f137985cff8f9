#include "model/formats/diffusers_keys.h"

#include <utility>

#include "common/error.h"

namespace wand::model::formats {

namespace {

using Json = nlohmann::json;

// Note [Diffusers DiT keys]: release prefix -> diffusers prefix, matched on whole
// dot-separated components.
const std::pair<const char*, const char*> kBlockRenames[] = {
    {"self_attn.q", "attn1.to_q"},
    {"self_attn.k", "attn1.to_k"},
    {"self_attn.v", "attn1.to_v"},
    {"self_attn.o", "attn1.to_out.0"},
    {"self_attn.norm_q", "attn1.norm_q"},
    {"self_attn.norm_k", "attn1.norm_k"},
    {"cross_attn.q", "attn2.to_q"},
    {"cross_attn.k", "attn2.to_k"},
    {"cross_attn.v", "attn2.to_v"},
    {"cross_attn.o", "attn2.to_out.0"},
    {"cross_attn.norm_q", "attn2.norm_q"},
    {"cross_attn.norm_k", "attn2.norm_k"},
    {"norm3", "norm2"},
    {"ffn.0", "ffn.net.0.proj"},
    {"ffn.2", "ffn.net.2"},
    {"modulation", "scale_shift_table"},
};

const std::pair<const char*, const char*> kNonBlockRenames[] = {
    {"patch_embedding", "patch_embedding"},
    {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
    {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
    {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
    {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
    {"time_projection.1", "condition_embedder.time_proj"},
    {"head.head", "proj_out"},
    {"head.modulation", "scale_shift_table"},
};

template <std::size_t N>
bool rename(const std::string& rest, const std::pair<const char*, const char*> (&table)[N], std::string* out) {
  for (const auto& [from, to] : table) {
    const std::string f = from;
    if (rest == f || (rest.size() > f.size() && rest.compare(0, f.size(), f) == 0 && rest[f.size()] == '.')) {
      *out = to + rest.substr(f.size());
      return true;
    }
  }
  return false;
}

// A positive integer field with the same bounds as the release config (Note [Config maxima]).
int64_t get_int(const Json& j, const char* key, const std::string& where, int64_t max, bool required = true,
                int64_t fallback = 0) {
  if (!j.contains(key) || j[key].is_null()) {
    if (!required) return fallback;
    throw Error(ErrorCode::kModelFormat, where + ": missing field '" + key + "'");
  }
  const Json& v = j[key];
  if (!v.is_number_integer()) {
    throw Error(ErrorCode::kModelFormat, where + ": field '" + std::string(key) + "' is not an integer");
  }
  const int64_t x = v.get<int64_t>();
  if (x <= 0 || x > max) {
    throw Error(ErrorCode::kModelFormat, where + ": field '" + std::string(key) + "' is " + std::to_string(x) +
                                             ", outside 1.." + std::to_string(max));
  }
  return x;
}

void refuse_unless_null(const Json& j, const char* key, const std::string& where, const char* why) {
  if (j.contains(key) && !j[key].is_null()) {
    throw Error(ErrorCode::kModelFormat, where + ": field '" + std::string(key) + "' is " + j[key].dump() + ": " + why);
  }
}

}  // namespace

std::string diffusers_dit_key(const std::string& release_key) {
  std::string out;
  if (release_key.rfind("blocks.", 0) == 0) {
    const std::size_t dot = release_key.find('.', 7);
    if (dot != std::string::npos && rename(release_key.substr(dot + 1), kBlockRenames, &out)) {
      return release_key.substr(0, dot + 1) + out;
    }
  } else if (rename(release_key, kNonBlockRenames, &out)) {
    return out;
  }
  throw Error(ErrorCode::kInternal, "diffusers key map: no diffusers name for the DiT key '" + release_key + "'");
}

std::map<std::string, std::string> diffusers_dit_key_map(const WanConfig& cfg) {
  std::map<std::string, std::string> m;
  for (const auto& [name, shape] : cfg.expected_tensors()) {
    const std::string d = diffusers_dit_key(name);
    WAND_ASSERT(m.emplace(d, name).second, "diffusers key map: two release keys map to " + d);
  }
  return m;
}

bool is_diffusers_dit_config(const Json& j) {
  return j.is_object() && j.contains("_class_name") && j["_class_name"] == kDiffusersDitClass;
}

WanConfig wan_config_from_diffusers(const Json& j, const std::string& where) {
  if (!is_diffusers_dit_config(j)) {
    throw Error(ErrorCode::kModelFormat, where + ": _class_name is " +
                                             (j.is_object() && j.contains("_class_name") ? j["_class_name"].dump()
                                                                                         : std::string("missing")) +
                                             ", expected \"" + kDiffusersDitClass + "\"");
  }
  // What the Wan2.2 DiT does not have (Wan2.1 i2v's CLIP image branch, Animate's adapters).
  refuse_unless_null(j, "image_dim", where, "an image embedder (Wan2.1 i2v / Animate), not a Wan2.2 DiT");
  refuse_unless_null(j, "added_kv_proj_dim", where, "added K/V projections (Wan2.1 i2v / Animate), not a Wan2.2 DiT");
  if (j.contains("patch_size") && j["patch_size"] != Json::array({1, 2, 2})) {
    throw Error(ErrorCode::kModelFormat, where + ": field 'patch_size' is " + j["patch_size"].dump() +
                                             ", wand runs [1, 2, 2] only");
  }
  if (j.contains("qk_norm") && j["qk_norm"] != "rms_norm_across_heads") {
    throw Error(ErrorCode::kModelFormat, where + ": field 'qk_norm' is " + j["qk_norm"].dump() +
                                             ", the Wan DiT has \"rms_norm_across_heads\"");
  }
  if (j.contains("cross_attn_norm") && j["cross_attn_norm"] != true) {
    throw Error(ErrorCode::kModelFormat, where + ": field 'cross_attn_norm' is " + j["cross_attn_norm"].dump() +
                                             ", the Wan DiT has true");
  }
  const int64_t heads = get_int(j, "num_attention_heads", where, 1024);
  const int64_t head_dim = get_int(j, "attention_head_dim", where, 4096);
  const int64_t in_ch = get_int(j, "in_channels", where, 4096);
  std::string model_type;
  if (in_ch == 16) {
    model_type = "t2v";
  } else if (in_ch == 36) {
    model_type = "i2v";
  } else if (in_ch == 48) {
    model_type = "ti2v";
  } else {
    throw Error(ErrorCode::kModelFormat, where + ": field 'in_channels' is " + std::to_string(in_ch) +
                                             ", not a Wan2.2 DiT (16: t2v, 36: i2v, 48: ti2v)");
  }
  Json r;  // the release config.json of the same geometry
  r["_class_name"] = "WanModel";
  r["model_type"] = model_type;
  r["dim"] = heads * head_dim;
  r["num_heads"] = heads;
  r["in_dim"] = in_ch;
  r["out_dim"] = get_int(j, "out_channels", where, 4096);
  r["ffn_dim"] = get_int(j, "ffn_dim", where, 1 << 17);
  r["freq_dim"] = get_int(j, "freq_dim", where, 1 << 17);
  r["num_layers"] = get_int(j, "num_layers", where, 1024);
  r["text_dim"] = get_int(j, "text_dim", where, 1 << 17, /*required=*/false, 4096);
  r["text_len"] = 512;  // the pipeline's max_sequence_length; not a model field in diffusers
  if (j.contains("eps")) {
    if (!j["eps"].is_number()) throw Error(ErrorCode::kModelFormat, where + ": field 'eps' is not a number");
    r["eps"] = j["eps"];
  }
  return WanConfig::from_checkpoint(r, where);
}

Json diffusers_dit_config_json(const WanConfig& c) {
  Json j;  // sorted keys, as diffusers writes them (json.dumps(sort_keys=True))
  j["_class_name"] = kDiffusersDitClass;
  j["_diffusers_version"] = "0.35.0.dev0";
  j["added_kv_proj_dim"] = nullptr;
  j["attention_head_dim"] = c.head_dim();
  j["cross_attn_norm"] = true;
  j["eps"] = c.eps;
  j["ffn_dim"] = c.ffn_dim;
  j["freq_dim"] = c.freq_dim;
  j["image_dim"] = nullptr;
  j["in_channels"] = c.in_dim;
  j["num_attention_heads"] = c.num_heads;
  j["num_layers"] = c.num_layers;
  j["out_channels"] = c.out_dim;
  j["patch_size"] = Json::array({c.patch_t, c.patch_h, c.patch_w});
  j["pos_embed_seq_len"] = nullptr;
  j["qk_norm"] = "rms_norm_across_heads";
  j["rope_max_seq_len"] = 1024;
  j["text_dim"] = c.text_dim;
  return j;
}

Json diffusers_model_index_json(const WanConfig& c) {
  const bool ti2v = c.model_type == "ti2v";
  Json j;
  j["_class_name"] = c.model_type == "i2v" ? "WanImageToVideoPipeline" : "WanPipeline";
  j["_diffusers_version"] = "0.35.0.dev0";
  j["boundary_ratio"] = ti2v ? Json(nullptr) : Json(c.boundary);
  j["expand_timesteps"] = ti2v;
  if (c.model_type == "i2v") {  // Wan2.2 i2v has no CLIP image encoder
    j["image_encoder"] = Json::array({nullptr, nullptr});
    j["image_processor"] = Json::array({nullptr, nullptr});
  }
  j["scheduler"] = Json::array({"diffusers", "UniPCMultistepScheduler"});
  j["text_encoder"] = Json::array({"transformers", "UMT5EncoderModel"});
  j["tokenizer"] = Json::array({"transformers", "T5TokenizerFast"});
  j["transformer"] = Json::array({"diffusers", kDiffusersDitClass});
  j["transformer_2"] = ti2v ? Json::array({nullptr, nullptr}) : Json::array({"diffusers", kDiffusersDitClass});
  j["vae"] = Json::array({"diffusers", "AutoencoderKLWan"});
  return j;
}

WanConfig wan_config_from_any(const Json& j, const std::string& where) {
  if (is_diffusers_dit_config(j)) return wan_config_from_diffusers(j, where);
  return WanConfig::from_checkpoint(j, where);
}

}  // namespace wand::model::formats
