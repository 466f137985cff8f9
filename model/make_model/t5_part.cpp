// wand-make-model's umT5 part: <root>/models_t5_umt5-xxl-enc-bf16.pth (bf16,
// random init, streamed) and <root>/google/umt5-xxl/ (tokenizer).
//
// Tiny presets: dim 64, dim_attn 64, 4 heads, ffn 160, 2 layers, 32 buckets,
// vocab = the tokenizer's size. Full-size presets: the release architecture
// (vocab 256384, dim 4096, 64 heads, ffn 10240, 24 layers; 11.4 GB), with the
// same small tokenizer (the real spiece.model cannot be downloaded here; its
// ids stay far below 256384).
// The tokenizer is built by SpmModel::build_unigram, not by sentencepiece's
// trainer: libsentencepiece cannot be loaded next to Debian's LibTorch (see
// model/CMakeLists.txt), and a unigram model is just pieces and scores.
#include <algorithm>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"
#include "model/formats/transformers_umt5_keys.h"
#include "model/make_model/make_model.h"
#include "model/make_model/parts.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/t5_writer.h"

namespace wand::model::make {

namespace {
bool is_tiny(const std::string& preset) { return preset.rfind("tiny", 0) == 0; }
void check_preset(const std::string& preset) {
  for (const char* p : {"tiny-t2v", "tiny-i2v", "tiny-ti2v", "t2v-A14B", "i2v-A14B", "ti2v-5B"}) {
    if (preset == p) return;
  }
  throw Error(ErrorCode::kBadRequest, "make-model: unknown preset '" + preset + "'");
}
namespace fs = std::filesystem;

void write_json(const fs::path& p, const nlohmann::json& j) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  if (!out) throw Error(ErrorCode::kIo, "write " + p.string() + " failed");
}

// transformers' UMT5EncoderModel state-dict order of a release key list (the .pth's order is
// T5Encoder's: embedding, per block norm1 attn ... , norm): shared, per block layer.0
// (SelfAttention q k v o relative_attention_bias, layer_norm), layer.1 (DenseReluDense wi_0
// wi_1 wo, layer_norm), final_layer_norm.
std::vector<std::string> transformers_order(const PthFile& pth, int64_t layers) {
  std::vector<std::string> out = {"shared.weight"};
  static const char* const kBlock[] = {
      "layer.0.SelfAttention.q.weight",       "layer.0.SelfAttention.k.weight",
      "layer.0.SelfAttention.v.weight",       "layer.0.SelfAttention.o.weight",
      "layer.0.SelfAttention.relative_attention_bias.weight", "layer.0.layer_norm.weight",
      "layer.1.DenseReluDense.wi_0.weight",   "layer.1.DenseReluDense.wi_1.weight",
      "layer.1.DenseReluDense.wo.weight",     "layer.1.layer_norm.weight"};
  for (int64_t i = 0; i < layers; ++i) {
    for (const char* k : kBlock) out.push_back("encoder.block." + std::to_string(i) + "." + k);
  }
  out.push_back("encoder.final_layer_norm.weight");
  for (const std::string& k : out) {
    const auto w = formats::wand_umt5_key(k);
    if (!w || !pth.contains(*w)) throw Error(ErrorCode::kInternal, "make-model: umT5 key map misses " + k);
  }
  if (out.size() != pth.names().size()) throw Error(ErrorCode::kInternal, "make-model: umT5 tensor count differs");
  return out;
}

// text_encoder/ from the release .pth: the same tensors (bf16), renamed, in two shards as
// save_pretrained splits them (keys sorted inside a shard), with the index and config.json;
// single_name: one file of that name in dir instead (ComfyUI's umt5_xxl_*.safetensors).
void write_text_encoder_dir(const fs::path& dir, const fs::path& pth_path, const T5Config& cfg,
                            const std::string& single_name = "") {
  fs::create_directories(dir);
  const PthFile pth(pth_path.string());
  const std::vector<std::string> order = transformers_order(pth, cfg.num_layers);
  std::vector<std::uint64_t> sizes;
  std::uint64_t total = 0;
  for (const std::string& k : order) {
    sizes.push_back(pth.info(*formats::wand_umt5_key(k)).nbytes);
    total += sizes.back();
  }
  const auto shards = plan_shards(sizes, single_name.empty() ? total / 2 + 1 : total + 1);
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    const std::string name = single_name.empty() ? std::string(buf) : single_name;
    std::vector<std::string> keys;
    for (std::size_t i : shards[s]) keys.push_back(order[i]);
    std::sort(keys.begin(), keys.end());
    SafetensorsWriter w((dir / name).string(), {{"format", "pt"}});
    for (const std::string& k : keys) {
      const TensorInfo& ti = pth.info(*formats::wand_umt5_key(k));
      w.declare(k, ti.dtype, ti.shape);
    }
    for (const std::string& k : keys) {
      w.write(k, pth.load(*formats::wand_umt5_key(k)).contiguous());
      weight_map[k] = name;
    }
    w.finish();
  }
  if (!single_name.empty()) return;
  nlohmann::json index;
  index["metadata"]["total_size"] = total;
  index["weight_map"] = weight_map;
  write_json(dir / "model.safetensors.index.json", index);
  write_json(dir / "config.json", {{"architectures", {"UMT5EncoderModel"}},
                                   {"model_type", "umt5"},
                                   {"d_model", cfg.dim},
                                   {"d_kv", cfg.dim_attn / cfg.num_heads},
                                   {"d_ff", cfg.dim_ffn},
                                   {"num_heads", cfg.num_heads},
                                   {"num_layers", cfg.num_layers},
                                   {"relative_attention_num_buckets", cfg.num_buckets},
                                   {"relative_attention_max_distance", cfg.max_dist},
                                   {"vocab_size", cfg.vocab},
                                   {"feed_forward_proj", "gated-gelu"},
                                   {"layer_norm_epsilon", cfg.eps},
                                   {"tie_word_embeddings", false},
                                   {"torch_dtype", "bfloat16"}});
}

}  // namespace

std::string write_t5_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed,
                          const std::string& layout) {
  check_preset(preset);
  const bool diffusers = layout == "diffusers", comfyui = layout == "comfyui";
  std::filesystem::create_directories(root);
  const SpmModel tok = tiny_umt5_tokenizer();
  write_umt5_tokenizer_dir(diffusers ? root / "tokenizer" : root / "google" / "umt5-xxl", tok);
  T5Config cfg = umt5_xxl_config();
  if (is_tiny(preset)) {
    cfg.vocab = static_cast<int64_t>(tok.pieces.size());
    cfg.dim = t5_dim_for_preset(preset);
    cfg.dim_attn = 64;
    cfg.dim_ffn = 160;
    cfg.num_heads = 4;
    cfg.num_layers = 2;
    cfg.num_buckets = 32;
  }
  if (!diffusers && !comfyui) {
    write_t5_checkpoint(root / "models_t5_umt5-xxl-enc-bf16.pth", cfg, seed ^ 0x75d7355ull);
    return "models_t5_umt5-xxl-enc-bf16.pth";
  }
  // The same values as the release file of this seed, through a temporary .pth.
  const fs::path tmp = root / ".make-model-umt5.pth";
  write_t5_checkpoint(tmp, cfg, seed ^ 0x75d7355ull);
  const std::string single = comfyui ? "umt5_xxl_bf16.safetensors" : "";
  write_text_encoder_dir(comfyui ? root : root / "text_encoder", tmp, cfg, single);
  fs::remove(tmp);
  return comfyui ? single : "text_encoder";
}

int t5_dim_for_preset(const std::string& preset) { return is_tiny(preset) ? 64 : 4096; }

}  // namespace wand::model::make
