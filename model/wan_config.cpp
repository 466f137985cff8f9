#include "model/wan_config.h"

#include "common/error.h"
#include "common/log.h"

namespace wand::model {

namespace {

using Json = nlohmann::json;

// Note [Config maxima]: bounds far above every released Wan2.2 model (A14B: dim 5120,
// ffn 13824, 40 layers, 40 heads) and below what would exhaust memory by shape alone.
int64_t config_field_max(const char* key) {
  const std::string k = key;
  if (k == "num_layers") return 1024;
  if (k == "num_heads") return 1024;
  if (k == "text_len") return 8192;
  if (k == "in_dim" || k == "out_dim") return 4096;
  return 1 << 17;  // dim, ffn_dim, freq_dim, text_dim
}

int64_t get_int(const Json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw Error(ErrorCode::kModelFormat, where + ": missing field '" + key + "'");
  const Json& v = j[key];
  if (!v.is_number_integer()) {
    throw Error(ErrorCode::kModelFormat, where + ": field '" + std::string(key) + "' is not an integer");
  }
  const int64_t x = v.get<int64_t>();
  // Issue 15: a config.json with num_layers 1000000 loaded and took the daemon down
  // with it at the expert switch; every field has a sane maximum (Note [Config maxima]).
  const int64_t max = config_field_max(key);
  if (x > max) {
    throw Error(ErrorCode::kModelFormat, where + ": field '" + std::string(key) + "' is " + std::to_string(x) +
                                             ", more than the maximum " + std::to_string(max));
  }
  if (x <= 0) {
    throw Error(ErrorCode::kModelFormat, where + ": field '" + std::string(key) + "' must be positive, got " +
                                             std::to_string(x));
  }
  return x;
}

// Pipeline constants per family (wan/configs): boundary, shift, steps, guide (low, high), VAE.
void apply_family(WanConfig& c) {
  if (c.model_type == "t2v") {
    c.boundary = 0.875;
    c.sample_shift = 12.0;
    c.sample_steps = 40;
    c.guide_scale_low = 3.0;
    c.guide_scale_high = 4.0;
    c.vae_stride_h = c.vae_stride_w = 8;
    c.z_dim = 16;
  } else if (c.model_type == "i2v") {
    c.boundary = 0.9;
    c.sample_shift = 5.0;
    c.sample_steps = 40;
    c.guide_scale_low = 3.5;
    c.guide_scale_high = 3.5;
    c.vae_stride_h = c.vae_stride_w = 8;
    c.z_dim = 16;
  } else {  // ti2v
    c.boundary = 0.0;
    c.sample_shift = 5.0;
    c.sample_steps = 50;
    c.guide_scale_low = 5.0;
    c.guide_scale_high = 5.0;
    c.vae_stride_h = c.vae_stride_w = 16;
    c.z_dim = 48;
  }
  c.vae_stride_t = 4;
}

int64_t expected_in_dim(const std::string& model_type) {
  if (model_type == "t2v") return 16;
  if (model_type == "i2v") return 36;
  return 48;
}

void validate(const WanConfig& c, const std::string& where) {
  if (c.model_type != "t2v" && c.model_type != "i2v" && c.model_type != "ti2v") {
    throw Error(ErrorCode::kModelFormat, where + ": model_type '" + c.model_type + "' is not t2v, i2v or ti2v");
  }
  if (c.in_dim != expected_in_dim(c.model_type)) {
    throw Error(ErrorCode::kModelFormat, where + ": in_dim " + std::to_string(c.in_dim) + " does not fit model_type " +
                                             c.model_type + " (expected " +
                                             std::to_string(expected_in_dim(c.model_type)) + ")");
  }
  if (c.dim % c.num_heads != 0) {
    throw Error(ErrorCode::kModelFormat, where + ": dim " + std::to_string(c.dim) + " is not a multiple of num_heads " +
                                             std::to_string(c.num_heads));
  }
  if (c.head_dim() % 2 != 0 || c.head_dim() < 6) {
    throw Error(ErrorCode::kModelFormat, where + ": head dim " + std::to_string(c.head_dim()) +
                                             " must be even and >= 6 (3-D RoPE)");
  }
  if (c.freq_dim % 2 != 0) {
    throw Error(ErrorCode::kModelFormat, where + ": freq_dim must be even");
  }
}

std::string derive_variant(const WanConfig& c) {
  if (c.model_type == "t2v" && c.in_dim == 16 && c.dim == 5120) return "t2v-A14B";
  if (c.model_type == "i2v" && c.in_dim == 36 && c.dim == 5120) return "i2v-A14B";
  if (c.model_type == "ti2v" && c.in_dim == 48 && c.dim == 3072) return "ti2v-5B";
  if (c.dim <= 256) return "tiny-" + c.model_type;
  return "custom-" + c.model_type;
}

}  // namespace

WanConfig WanConfig::from_checkpoint(const Json& j, const std::string& where) {
  if (!j.is_object()) throw Error(ErrorCode::kModelFormat, where + ": not a JSON object");
  if (j.contains("_class_name") && j["_class_name"] != "WanModel") {
    throw Error(ErrorCode::kModelFormat, where + ": _class_name is " + j["_class_name"].dump() + ", expected \"WanModel\"");
  }
  WanConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string()) {
    throw Error(ErrorCode::kModelFormat, where + ": missing string field 'model_type'");
  }
  c.model_type = j["model_type"].get<std::string>();
  c.dim = get_int(j, "dim", where);
  c.ffn_dim = get_int(j, "ffn_dim", where);
  c.freq_dim = get_int(j, "freq_dim", where);
  c.in_dim = get_int(j, "in_dim", where);
  c.out_dim = get_int(j, "out_dim", where);
  c.num_heads = get_int(j, "num_heads", where);
  c.num_layers = get_int(j, "num_layers", where);
  c.text_len = get_int(j, "text_len", where);
  if (j.contains("text_dim")) c.text_dim = get_int(j, "text_dim", where);
  if (j.contains("eps")) {
    if (!j["eps"].is_number()) throw Error(ErrorCode::kModelFormat, where + ": field 'eps' is not a number");
    c.eps = j["eps"].get<double>();
  }
  validate(c, where);
  apply_family(c);
  c.variant = derive_variant(c);
  log::get("model")->info("dit config variant={} dim={} layers={} heads={} in_dim={} text_dim={} file={}", c.variant,
                          c.dim, c.num_layers, c.num_heads, c.in_dim, c.text_dim, where);
  return c;
}

WanConfig WanConfig::from_preset(const std::string& preset, int64_t text_dim_override) {
  WanConfig c;
  c.freq_dim = 256;
  c.text_len = 512;
  c.eps = 1e-6;
  if (preset == "t2v-A14B" || preset == "i2v-A14B") {
    c.model_type = preset == "t2v-A14B" ? "t2v" : "i2v";
    c.dim = 5120;
    c.ffn_dim = 13824;
    c.num_heads = 40;
    c.num_layers = 40;
  } else if (preset == "ti2v-5B") {
    c.model_type = "ti2v";
    c.dim = 3072;
    c.ffn_dim = 14336;
    c.num_heads = 24;
    c.num_layers = 30;
  } else if (preset == "tiny-t2v" || preset == "tiny-i2v" || preset == "tiny-ti2v") {
    c.model_type = preset.substr(5);
    c.dim = 64;
    c.ffn_dim = c.model_type == "t2v" ? 160 : 192;
    c.num_heads = 2;
    c.num_layers = 2;
  } else {
    throw Error(ErrorCode::kBadRequest, "unknown preset '" + preset +
                                            "' (t2v-A14B, i2v-A14B, ti2v-5B, tiny-t2v, tiny-i2v, tiny-ti2v)");
  }
  c.in_dim = expected_in_dim(c.model_type);
  c.out_dim = c.model_type == "ti2v" ? 48 : 16;
  if (text_dim_override > 0) c.text_dim = text_dim_override;
  validate(c, "preset " + preset);
  apply_family(c);
  c.variant = derive_variant(c);
  return c;
}

Json WanConfig::to_config_json() const {
  // Key order as diffusers writes it (sorted, json.dumps(sort_keys=True)).
  Json j;
  j["_class_name"] = "WanModel";
  j["_diffusers_version"] = "0.33.0";
  j["dim"] = dim;
  j["eps"] = eps;
  j["ffn_dim"] = ffn_dim;
  j["freq_dim"] = freq_dim;
  j["in_dim"] = in_dim;
  j["model_type"] = model_type;
  j["num_heads"] = num_heads;
  j["num_layers"] = num_layers;
  j["out_dim"] = out_dim;
  if (text_dim != 4096) j["text_dim"] = text_dim;
  j["text_len"] = text_len;
  return j;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> WanConfig::block_tensors(int64_t i) const {
  const std::string p = "blocks." + std::to_string(i) + ".";
  const int64_t D = dim, F = ffn_dim;
  std::vector<std::pair<std::string, std::vector<int64_t>>> v;
  for (const char* attn : {"self_attn", "cross_attn"}) {
    for (const char* l : {"q", "k", "v", "o"}) {
      v.push_back({p + attn + "." + l + ".weight", {D, D}});
      v.push_back({p + attn + "." + l + ".bias", {D}});
    }
    v.push_back({p + attn + ".norm_q.weight", {D}});
    v.push_back({p + attn + ".norm_k.weight", {D}});
  }
  v.push_back({p + "norm3.weight", {D}});
  v.push_back({p + "norm3.bias", {D}});
  v.push_back({p + "ffn.0.weight", {F, D}});
  v.push_back({p + "ffn.0.bias", {F}});
  v.push_back({p + "ffn.2.weight", {D, F}});
  v.push_back({p + "ffn.2.bias", {D}});
  v.push_back({p + "modulation", {1, 6, D}});
  return v;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> WanConfig::non_block_tensors() const {
  const int64_t D = dim;
  return {
      {"patch_embedding.weight", {D, in_dim, patch_t, patch_h, patch_w}},
      {"patch_embedding.bias", {D}},
      {"text_embedding.0.weight", {D, text_dim}},
      {"text_embedding.0.bias", {D}},
      {"text_embedding.2.weight", {D, D}},
      {"text_embedding.2.bias", {D}},
      {"time_embedding.0.weight", {D, freq_dim}},
      {"time_embedding.0.bias", {D}},
      {"time_embedding.2.weight", {D, D}},
      {"time_embedding.2.bias", {D}},
      {"time_projection.1.weight", {6 * D, D}},
      {"time_projection.1.bias", {6 * D}},
      {"head.head.weight", {patch_t * patch_h * patch_w * out_dim, D}},
      {"head.head.bias", {patch_t * patch_h * patch_w * out_dim}},
      {"head.modulation", {1, 2, D}},
  };
}

std::vector<std::pair<std::string, std::vector<int64_t>>> WanConfig::expected_tensors() const {
  auto v = non_block_tensors();
  for (int64_t i = 0; i < num_layers; ++i) {
    auto b = block_tensors(i);
    v.insert(v.end(), b.begin(), b.end());
  }
  return v;
}

int64_t WanConfig::num_params() const {
  int64_t n = 0;
  for (const auto& [name, shape] : expected_tensors()) {
    int64_t k = 1;
    for (int64_t d : shape) k *= d;
    n += k;
  }
  return n;
}

}  // namespace wand::model
