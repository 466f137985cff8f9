#include "model/make_model/make_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>

#include "common/error.h"
#include "common/log.h"
#include "model/checkpoint.h"
#include "model/formats/diffusers_keys.h"
#include "model/formats/model_layout.h"
#include "model/make_model/parts.h"
#include "model/fp8.h"
#include "model/safetensors.h"
#include "model/weight_storage.h"

namespace wand::model::make {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kDefaultShardBytes = 10ull * 1000 * 1000 * 1000;  // "10GB" as huggingface_hub parses it

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// State-dict order of WanModel (module registration order), which is how
// save_pretrained assigns tensors to shards. diffusers: WanTransformer3DModel's order
// (patch_embedding, condition_embedder: time_embedder, time_proj, text_embedder; per block
// attn1, attn2, norm2, ffn, scale_shift_table; proj_out, scale_shift_table), release names.
std::vector<std::pair<std::string, std::vector<int64_t>>> state_dict_order(const WanConfig& cfg, bool diffusers) {
  auto nb = cfg.non_block_tensors();  // patch(2) text(4) time(4) proj(2) head(3)
  if (diffusers) {
    std::vector<std::pair<std::string, std::vector<int64_t>>> v(nb.begin(), nb.begin() + 2);
    v.insert(v.end(), nb.begin() + 6, nb.begin() + 12);  // time_embedder, time_proj
    v.insert(v.end(), nb.begin() + 2, nb.begin() + 6);   // text_embedder
    for (int64_t i = 0; i < cfg.num_layers; ++i) {
      auto b = cfg.block_tensors(i);  // attn1(10) attn2(10) norm2(2) ffn(4) scale_shift_table(1): already in order
      v.insert(v.end(), b.begin(), b.end());
    }
    v.insert(v.end(), nb.begin() + 12, nb.end());
    return v;
  }
  std::vector<std::pair<std::string, std::vector<int64_t>>> v(nb.begin(), nb.begin() + 12);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    auto b = cfg.block_tensors(i);  // self_attn(10) cross_attn(10) norm3(2) ffn(4) modulation(1)
    // Registration order: self_attn, norm3, cross_attn, ffn, modulation.
    std::vector<std::pair<std::string, std::vector<int64_t>>> ordered;
    ordered.insert(ordered.end(), b.begin(), b.begin() + 10);
    ordered.insert(ordered.end(), b.begin() + 20, b.begin() + 22);
    ordered.insert(ordered.end(), b.begin() + 10, b.begin() + 20);
    ordered.insert(ordered.end(), b.begin() + 22, b.end());
    v.insert(v.end(), ordered.begin(), ordered.end());
  }
  v.insert(v.end(), nb.begin() + 12, nb.end());
  return v;
}

std::string shard_name(size_t k, size_t n) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "diffusion_pytorch_model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::kIo, "create " + p.string());
  out << text;
  if (!out) throw Error(ErrorCode::kIo, "write " + p.string());
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t name_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

std::vector<std::vector<size_t>> plan_shards(const std::vector<std::uint64_t>& sizes, std::uint64_t max_shard_bytes) {
  // Fill in order; start a new shard when the next tensor would overflow; an
  // oversized tensor gets a shard of its own.
  std::vector<std::vector<size_t>> shards(1);
  std::uint64_t cur = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] > max_shard_bytes) {
      shards.push_back({i});
      shards.push_back({});
      cur = 0;
      continue;
    }
    if (cur + sizes[i] > max_shard_bytes && !shards.back().empty()) {
      shards.push_back({});
      cur = 0;
    }
    shards.back().push_back(i);
    cur += sizes[i];
  }
  std::vector<std::vector<size_t>> out;
  for (auto& s : shards) {
    if (!s.empty()) out.push_back(s);
  }
  return out;
}

at::Tensor random_dit_tensor(const std::string& name, const std::vector<int64_t>& shape, int64_t dim,
                             std::uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(mix(seed ^ name_hash(name)));
  at::Tensor t = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
  if (ends_with(name, "modulation")) {
    t.mul_(1.0 / std::sqrt(static_cast<double>(dim)));
  } else if (ends_with(name, "norm_q.weight") || ends_with(name, "norm_k.weight") || ends_with(name, "norm3.weight")) {
    t.mul_(0.1).add_(1.0);
  } else if (ends_with(name, ".bias")) {
    t.mul_(0.05);
  } else {
    const int64_t fan_in = t.numel() / shape[0];
    t.mul_(1.0 / std::sqrt(static_cast<double>(fan_in)));
  }
  return t;
}

std::uint64_t write_dit_expert(const fs::path& dir, const WanConfig& cfg, at::ScalarType dtype, std::uint64_t seed,
                               std::uint64_t max_shard_bytes, bool diffusers, const std::string& fp8) {
  if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf) {
    throw Error(ErrorCode::kBadRequest, "make-model: stored dtype must be fp32, bf16 or fp16");
  }
  if (!fp8.empty() && fp8 != "scaled" && fp8 != "scaled-row" && fp8 != "plain") {
    throw Error(ErrorCode::kBadRequest, "make-model: fp8 must be scaled, scaled-row or plain, got '" + fp8 + "'");
  }
  fs::create_directories(dir);
  const auto order = state_dict_order(cfg, diffusers);
  // The name on disk; the values always come from the release name (same seed, same weights).
  auto file_key = [&](const std::string& n) { return diffusers ? formats::diffusers_dit_key(n) : n; };
  // Note [fp8 stored dtype]: the one decision says which tensors are fp8.
  auto is_fp8 = [&](const std::string& n, const std::vector<int64_t>& shape) {
    return !fp8.empty() && block_tensor_storage(n, shape.size(), "BF16", WeightsDtype::kFp8) == StoredAs::kFp8;
  };
  const bool scaled = fp8 == "scaled" || fp8 == "scaled-row";
  const std::uint64_t esize = dtype == at::kFloat ? 4 : 2;
  std::uint64_t total = 0;
  std::vector<std::uint64_t> sizes;
  for (const auto& [n, shape] : order) {
    std::uint64_t k = is_fp8(n, shape) ? 1 : esize;
    for (int64_t d : shape) k *= static_cast<std::uint64_t>(d);
    sizes.push_back(k);
    total += k;
  }
  if (max_shard_bytes == 0) max_shard_bytes = kDefaultShardBytes;
  const std::vector<std::vector<size_t>> nonempty = plan_shards(sizes, max_shard_bytes);

  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t si = 0; si < nonempty.size(); ++si) {
    const std::string sname = nonempty.size() == 1 ? CheckpointDir::kSingleName : shard_name(si + 1, nonempty.size());
    // Every key of this shard (the fp8 scales beside their weights, the marker in the first
    // shard) in sorted order, each with how to write it.
    struct Entry {
      std::string key;
      size_t index;   // into order
      int kind;       // 0 tensor in dtype, 1 fp8 codes, 2 its scale, 3 the marker
    };
    std::vector<Entry> entries;
    for (size_t i : nonempty[si]) {
      const bool q = is_fp8(order[i].first, order[i].second);
      entries.push_back({file_key(order[i].first), i, q ? 1 : 0});
      if (q && scaled) entries.push_back({fp8_scale_key_of(file_key(order[i].first)), i, 2});
    }
    if (scaled && si == 0) entries.push_back({kFp8MarkerKey, 0, 3});
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
    SafetensorsWriter w((dir / sname).string(), {{"format", "pt"}});
    for (const Entry& e : entries) {
      const auto& shape = order[e.index].second;
      if (e.kind == 0) w.declare(e.key, dtype, shape);
      if (e.kind == 1) w.declare_fp8(e.key, shape);
      if (e.kind == 2) w.declare(e.key, at::kFloat, fp8 == "scaled-row" ? std::vector<int64_t>{shape[0]} : std::vector<int64_t>{});
      if (e.kind == 3) w.declare_fp8(e.key, {0});  // ComfyUI's marker: an empty fp8 tensor
    }
    // A weight's codes and scale come from one quantization (consecutive keys share it).
    std::map<size_t, Fp8Tensor> quantized;
    auto quantize = [&](size_t i) -> const Fp8Tensor& {
      auto it = quantized.find(i);
      if (it != quantized.end()) return it->second;
      const at::Tensor t = random_dit_tensor(order[i].first, order[i].second, cfg.dim, seed).to(at::kBFloat16);
      Fp8Tensor q;
      if (fp8 == "plain") {  // the values themselves (a plain cast to fp8_e4m3fn)
        q.codes = fp8_e4m3fn_encode(t.to(at::kFloat));
        q.scale = at::ones({}, at::kFloat);
      } else {
        q = quantize_fp8_e4m3fn(t, fp8 == "scaled-row" ? Fp8Scaling::kRow : Fp8Scaling::kTensor);
      }
      return quantized.emplace(i, std::move(q)).first->second;
    };
    for (const Entry& e : entries) {
      if (e.kind == 0) {
        at::Tensor t = random_dit_tensor(order[e.index].first, order[e.index].second, cfg.dim, seed);
        w.write(e.key, t.to(dtype).contiguous());
      } else if (e.kind == 1) {
        w.write(e.key, quantize(e.index).codes);
      } else if (e.kind == 2) {
        w.write(e.key, quantize(e.index).scale.reshape(fp8 == "scaled-row" ? std::vector<int64_t>{order[e.index].second[0]}
                                                                           : std::vector<int64_t>{}));
      } else {
        w.write(e.key, at::empty({0}, at::kByte));
      }
      weight_map[e.key] = sname;
    }
    w.finish();
  }
  if (nonempty.size() > 1) {
    nlohmann::json idx;
    idx["metadata"]["total_size"] = total;
    idx["weight_map"] = weight_map;  // nlohmann::json objects are key-sorted
    write_text(dir / CheckpointDir::kIndexName, idx.dump(2) + "\n");
  }
  write_text(dir / "config.json",
             (diffusers ? formats::diffusers_dit_config_json(cfg) : cfg.to_config_json()).dump(2) + "\n");
  log::get("model")->info("make-model expert dir={} variant={} layout={} shards={} bytes={}", dir.string(), cfg.variant,
                          diffusers ? "diffusers" : "release", nonempty.size(), format_bytes(total));
  return total;
}

void write_shared_expert(const fs::path& dir, const fs::path& shared_from, const WanConfig& cfg) {
  fs::create_directories(dir);
  std::ifstream in(shared_from / CheckpointDir::kIndexName);
  if (!in) throw Error(ErrorCode::kIo, "make-model: --share-experts needs a sharded index in " + shared_from.string());
  nlohmann::json idx = nlohmann::json::parse(in);
  const std::string rel = "../" + shared_from.filename().string() + "/";
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    it.value() = rel + it.value().get<std::string>();
  }
  write_text(dir / CheckpointDir::kIndexName, idx.dump(2) + "\n");
  write_text(dir / "config.json", cfg.to_config_json().dump(2) + "\n");
}

void make_model(const MakeModelOptions& o) {
  if (o.out.empty()) throw Error(ErrorCode::kBadRequest, "make-model: --out is required");
  const bool tiny = o.preset.rfind("tiny-", 0) == 0;
  const int64_t text_dim = tiny ? t5_dim_for_preset(o.preset) : 4096;
  const WanConfig cfg = WanConfig::from_preset(o.preset, text_dim);
  if (o.layout != "release" && o.layout != "diffusers" && o.layout != "comfyui") {
    throw Error(ErrorCode::kBadRequest,
                "make-model: --layout must be release, diffusers or comfyui, got '" + o.layout + "'");
  }
  const bool diffusers = o.layout == "diffusers", comfyui = o.layout == "comfyui";
  if ((diffusers || comfyui) && o.share_experts) {
    throw Error(ErrorCode::kBadRequest, "make-model: --share-experts is a release-layout test aid, not a " + o.layout +
                                            " layout");
  }
  if (comfyui && o.dit_only) throw Error(ErrorCode::kBadRequest, "make-model: --dit-only needs the release layout");
  fs::create_directories(o.out);
  std::uint64_t shard = o.max_shard_bytes;
  if (shard == 0 && tiny) {
    const std::uint64_t esize = o.dtype == at::kFloat ? 4 : 2;
    shard = static_cast<std::uint64_t>(cfg.num_params()) * esize * 3 / 5;  // two shards, like the golden cases
  }
  if (comfyui) {
    // Note [Model manifest]: one file per expert (release names, as ComfyUI's repackaged
    // files), the umT5 and VAE files, google/umt5-xxl/, wand-model.json. Same seeds as the release.
    const std::string dt = o.dtype == at::kFloat ? "fp32" : (o.dtype == at::kHalf ? "fp16" : "bf16");
    const std::string tag = cfg.model_type + (tiny ? "_tiny" : (cfg.model_type == "ti2v" ? "_5B" : "_14B"));
    auto single = [&](const std::string& file, std::uint64_t seed) {
      const fs::path tmp = o.out / (".make-model-" + file);
      write_dit_expert(tmp, cfg, o.dtype, seed, std::numeric_limits<std::uint64_t>::max());
      fs::rename(tmp / CheckpointDir::kSingleName, o.out / file);
      fs::remove_all(tmp);
      return file;
    };
    nlohmann::json m = {{"format", "comfyui"}, {"model_type", cfg.model_type}};
    if (cfg.model_type == "ti2v") {
      m["dit"] = single("wan2.2_" + tag + "_" + dt + ".safetensors", o.seed);
    } else {
      m["high_noise"] = single("wan2.2_" + cfg.model_type + "_high_noise" + tag.substr(cfg.model_type.size()) + "_" + dt +
                                   ".safetensors",
                               mix(o.seed) + 1);
      m["low_noise"] = single("wan2.2_" + cfg.model_type + "_low_noise" + tag.substr(cfg.model_type.size()) + "_" + dt +
                                  ".safetensors",
                              mix(o.seed) + 2);
    }
    m["text_encoder"] = write_t5_part(o.out, o.preset, o.seed, "comfyui");
    m["tokenizer"] = "google/umt5-xxl";
    m["vae"] = write_vae_part(o.out, o.preset, o.seed, "comfyui");
    write_text(o.out / formats::kManifestName, m.dump(2) + "\n");
  } else if (diffusers) {
    // Same seeds as the release experts: high noise = transformer/, low noise = transformer_2/.
    if (cfg.model_type == "ti2v") {
      write_dit_expert(o.out / "transformer", cfg, o.dtype, o.seed, shard, true, o.fp8);
    } else {
      write_dit_expert(o.out / "transformer", cfg, o.dtype, mix(o.seed) + 1, shard, true, o.fp8);
      write_dit_expert(o.out / "transformer_2", cfg, o.dtype, mix(o.seed) + 2, shard, true, o.fp8);
    }
    write_text(o.out / formats::kModelIndexName, formats::diffusers_model_index_json(cfg).dump(2) + "\n");
  } else if (cfg.model_type == "ti2v") {
    write_dit_expert(o.out, cfg, o.dtype, o.seed, shard, false, o.fp8);
  } else {
    write_dit_expert(o.out / "high_noise_model", cfg, o.dtype, mix(o.seed) + 1, shard, false, o.fp8);
    if (o.share_experts) {
      write_shared_expert(o.out / "low_noise_model", o.out / "high_noise_model", cfg);
    } else {
      write_dit_expert(o.out / "low_noise_model", cfg, o.dtype, mix(o.seed) + 2, shard, false, o.fp8);
    }
  }
  if (!o.dit_only && !comfyui) {  // diffusers: text_encoder/, tokenizer/, vae/ (Note [Diffusers parts])
    write_t5_part(o.out, o.preset, o.seed, o.layout);
    write_vae_part(o.out, o.preset, o.seed, o.layout);
  }
  log::get("model")->info("make-model preset={} out={} layout={} dtype={} fp8={} shared_experts={}", o.preset,
                          o.out.string(), o.layout, o.dtype == at::kFloat ? "fp32" : (o.dtype == at::kHalf ? "fp16" : "bf16"),
                          o.fp8.empty() ? "no" : o.fp8, o.share_experts);
}

}  // namespace wand::model::make
