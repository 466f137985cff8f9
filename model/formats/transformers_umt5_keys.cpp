#include "model/formats/transformers_umt5_keys.h"

#include <utility>

namespace wand::model::formats {

namespace {

// Note [umT5 transformers keys]: per-layer suffix pairs (transformers, release).
const std::pair<const char*, const char*> kLayerKeys[] = {
    {"layer.0.layer_norm.weight", "norm1.weight"},
    {"layer.0.SelfAttention.q.weight", "attn.q.weight"},
    {"layer.0.SelfAttention.k.weight", "attn.k.weight"},
    {"layer.0.SelfAttention.v.weight", "attn.v.weight"},
    {"layer.0.SelfAttention.o.weight", "attn.o.weight"},
    {"layer.0.SelfAttention.relative_attention_bias.weight", "pos_embedding.embedding.weight"},
    {"layer.1.layer_norm.weight", "norm2.weight"},
    {"layer.1.DenseReluDense.wi_0.weight", "ffn.gate.0.weight"},
    {"layer.1.DenseReluDense.wi_1.weight", "ffn.fc1.weight"},
    {"layer.1.DenseReluDense.wo.weight", "ffn.fc2.weight"},
};

// "<prefix><digits>.<rest>" -> (digits, rest).
bool split_layer(const std::string& key, const std::string& prefix, std::string* n, std::string* rest) {
  if (key.compare(0, prefix.size(), prefix) != 0) return false;
  std::size_t i = prefix.size(), j = i;
  while (j < key.size() && key[j] >= '0' && key[j] <= '9') ++j;
  if (j == i || j >= key.size() || key[j] != '.') return false;
  *n = key.substr(i, j - i);
  *rest = key.substr(j + 1);
  return true;
}

}  // namespace

std::optional<std::string> wand_umt5_key(const std::string& k) {
  if (k == "shared.weight" || k == "encoder.embed_tokens.weight") return std::string("token_embedding.weight");
  if (k == "encoder.final_layer_norm.weight") return std::string("norm.weight");
  std::string n, rest;
  if (!split_layer(k, "encoder.block.", &n, &rest)) return std::nullopt;
  for (const auto& [t, w] : kLayerKeys) {
    if (rest == t) return "blocks." + n + "." + w;
  }
  return std::nullopt;
}

std::optional<std::string> transformers_umt5_key(const std::string& k) {
  if (k == "token_embedding.weight") return std::string("shared.weight");
  if (k == "norm.weight") return std::string("encoder.final_layer_norm.weight");
  std::string n, rest;
  if (!split_layer(k, "blocks.", &n, &rest)) return std::nullopt;
  for (const auto& [t, w] : kLayerKeys) {
    if (rest == w) return "encoder.block." + n + "." + t;
  }
  return std::nullopt;
}

}  // namespace wand::model::formats
