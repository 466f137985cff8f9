#include "scheduler/plan/model_shape.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "common/error.h"
#include "model/formats/diffusers_keys.h"
#include "model/formats/model_layout.h"
#include "model/formats/single_file.h"
#include "model/safetensors_header.h"
#include "model/wan_config.h"
#include "model/weight_storage.h"

namespace wand::sched::plan {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kHighDir = "high_noise_model";
constexpr const char* kIndexName = "diffusion_pytorch_model.safetensors.index.json";

[[noreturn]] void bad(const fs::path& file, const std::string& why) {
  throw Error(ErrorCode::kModelFormat, file.string() + ": " + why);
}

json read_json_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kModelFormat, file.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    bad(file, std::string("not valid JSON: ") + e.what());
  }
}

// Block index of a tensor name "blocks.<i>.<rest>", or -1.
std::int64_t block_index(const std::string& name) {
  if (name.rfind("blocks.", 0) != 0) return -1;
  const std::size_t dot = name.find('.', 7);
  if (dot == std::string::npos || dot == 7) return -1;
  std::int64_t i = 0;
  for (std::size_t k = 7; k < dot; ++k) {
    if (name[k] < '0' || name[k] > '9') return -1;
    i = i * 10 + (name[k] - '0');
  }
  return i;
}

// Shard files of one expert dir: the index's weight_map values, else every *.safetensors.
std::vector<fs::path> shard_files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_regular_file(dir)) return {dir};  // a single-file expert (comfyui)
  const fs::path index = dir / kIndexName;
  std::error_code ec;
  if (fs::exists(index, ec)) {
    const json j = read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) bad(index, "missing object 'weight_map'");
    std::set<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) bad(index, "weight_map entry '" + name + "' is not a string");
      files.insert(file.get<std::string>());
    }
    for (const auto& f : files) out.push_back(dir / f);
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".safetensors") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
  }
  if (out.empty()) throw Error(ErrorCode::kModelFormat, dir.string() + ": no safetensors shards (and no " + kIndexName + ")");
  return out;
}

// prefix: the single-file expert's key prefix (model/formats/single_file.h), "" otherwise.
ExpertShape read_expert(const fs::path& dir, const std::string& name, std::int64_t num_layers, bool* shares_with_high,
                        model::WeightsDtype weights, const std::string& prefix = "") {
  ExpertShape e;
  e.name = name;
  e.dir = dir;
  e.block_params.assign(static_cast<std::size_t>(num_layers), 0);
  e.block_stored_bytes.assign(static_cast<std::size_t>(num_layers), 0);
  e.block_fp8_params.assign(static_cast<std::size_t>(num_layers), 0);
  e.block_scale_bytes.assign(static_cast<std::size_t>(num_layers), 0);
  std::set<std::string> dtypes;
  for (const fs::path& shard : shard_files(dir)) {
    if (shares_with_high && shard.lexically_normal().string().find(std::string("/") + kHighDir + "/") != std::string::npos) {
      *shares_with_high = true;
    }
    const model::SafetensorsHeader h = model::read_safetensors_header(shard.string());
    std::map<std::string, std::uint64_t> scale_elems;  // weight key -> its file scale's elements
    for (const model::SafetensorsEntry& t : h.entries) {
      if (!model::is_fp8_scale_key(t.name)) continue;
      std::uint64_t n = 1;
      for (auto d : t.shape) n *= static_cast<std::uint64_t>(d);
      scale_elems[model::fp8_weight_key_of(t.name)] = n;
    }
    for (const model::SafetensorsEntry& t : h.entries) {
      if (model::is_fp8_aux_key(t.name)) continue;  // scales, the marker: not weights (counted below)
      std::uint64_t params = 1;
      for (auto d : t.shape) params *= static_cast<std::uint64_t>(d);
      dtypes.insert(t.dtype);
      const std::string key = t.name.compare(0, prefix.size(), prefix) == 0 ? t.name.substr(prefix.size()) : t.name;
      const std::int64_t b = block_index(key);
      if (b >= 0 && b < num_layers &&
          model::block_tensor_storage(key, t.shape.size(), t.dtype, weights) == model::StoredAs::kFp8) {
        // Note [fp8 stored dtype]: the file's scales, or one a row where wand quantizes.
        const auto it = scale_elems.find(t.name);
        const std::uint64_t scales = t.dtype == "F8_E4M3" ? (it != scale_elems.end() ? it->second : 1)
                                                          : static_cast<std::uint64_t>(t.shape[0]);
        e.block_fp8_params[static_cast<std::size_t>(b)] += params;
        e.block_scale_bytes[static_cast<std::size_t>(b)] += scales * 4;
      }
      if (b >= 0) {
        if (b >= num_layers) {
          bad(shard, "tensor " + t.name + " has block index " + std::to_string(b) + " but config.json says num_layers " +
                         std::to_string(num_layers));
        }
        e.block_params[static_cast<std::size_t>(b)] += params;
        e.block_stored_bytes[static_cast<std::size_t>(b)] += t.bytes();
      } else {
        e.non_block_params += params;
        e.non_block_stored_bytes += t.bytes();
      }
    }
  }
  for (std::int64_t b = 0; b < num_layers; ++b) {
    if (e.block_params[static_cast<std::size_t>(b)] == 0) {
      throw Error(ErrorCode::kModelFormat, dir.string() + ": no tensors of block " + std::to_string(b) +
                                               " in the shards (config.json num_layers " + std::to_string(num_layers) + ")");
    }
  }
  e.stored_dtype = dtypes.size() == 1 ? *dtypes.begin() : "mixed";
  return e;
}

// The geometry and family constants from config.json (or a single file's shapes), as the
// model reads them.
void apply_config(ModelShape& m, const model::WanConfig& c) {
  m.variant = c.variant;
  m.model_type = c.model_type;
  m.dim = c.dim;
  m.ffn_dim = c.ffn_dim;
  m.num_heads = c.num_heads;
  m.num_layers = c.num_layers;
  m.in_dim = c.in_dim;
  m.out_dim = c.out_dim;
  m.text_len = c.text_len;
  m.text_dim = c.text_dim;
  m.patch_h = static_cast<int>(c.patch_h);
  m.patch_w = static_cast<int>(c.patch_w);
  m.boundary = c.boundary;
  m.sample_shift = c.sample_shift;
  m.sample_steps = c.sample_steps;
  m.guide_scale_low = c.guide_scale_low;
  m.guide_scale_high = c.guide_scale_high;
  m.vae_stride_t = c.vae_stride_t;
  m.vae_stride_h = c.vae_stride_h;
  m.vae_stride_w = c.vae_stride_w;
  if (m.model_type == "ti2v") {  // the official TI2V defaults (generate.py: 121 frames at 1280x704)
    m.default_frames = 121;
    m.default_height = 704;
  }
}

}  // namespace

std::uint64_t ExpertShape::stored_bytes() const {
  std::uint64_t n = non_block_stored_bytes;
  for (auto b : block_stored_bytes) n += b;
  return n;
}

std::uint64_t ModelShape::block_run_bytes(std::size_t e, std::size_t b) const {
  const ExpertShape& x = experts.at(e);
  const std::uint64_t rb = static_cast<std::uint64_t>(run_bytes);
  const std::uint64_t fp8 = b < x.block_fp8_params.size() ? x.block_fp8_params[b] : 0;
  const std::uint64_t scales = b < x.block_scale_bytes.size() ? x.block_scale_bytes[b] : 0;
  return (x.block_params.at(b) - fp8) * rb + fp8 + scales;
}

std::uint64_t ModelShape::max_block_run_bytes() const {
  std::uint64_t m = 0;
  for (std::size_t e = 0; e < experts.size(); ++e) {
    for (std::size_t b = 0; b < experts[e].block_params.size(); ++b) m = std::max(m, block_run_bytes(e, b));
  }
  return m;
}

std::uint64_t ModelShape::max_block_dequant_bytes() const {
  std::uint64_t m = 0;
  for (const auto& e : experts) {
    for (auto p : e.block_fp8_params) m = std::max<std::uint64_t>(m, p * static_cast<std::uint64_t>(run_bytes));
  }
  return m;
}

std::uint64_t ModelShape::blocks_run_bytes(std::size_t e) const {
  std::uint64_t n = 0;
  for (std::size_t b = 0; b < experts.at(e).block_params.size(); ++b) n += block_run_bytes(e, b);
  return n;
}

std::uint64_t ModelShape::non_block_run_bytes(std::size_t e) const {
  return experts.at(e).non_block_params * static_cast<std::uint64_t>(run_bytes);
}

std::uint64_t ModelShape::expert_run_bytes(std::size_t e) const { return blocks_run_bytes(e) + non_block_run_bytes(e); }

json ModelShape::to_json() const {
  json ex = json::array();
  for (std::size_t i = 0; i < experts.size(); ++i) {
    const auto& e = experts[i];
    ex.push_back({{"name", e.name.empty() ? "(root)" : e.name},
                  {"stored_dtype", e.stored_dtype},
                  {"stored_bytes", e.stored_bytes()},
                  {"run_bytes", expert_run_bytes(i)},
                  {"block_run_bytes", e.block_params.empty() ? 0 : block_run_bytes(i, 0)},
                  {"non_block_run_bytes", non_block_run_bytes(i)}});
  }
  return {{"dir", dir.string()},       {"variant", variant},       {"model_type", model_type},
          {"dim", dim},                {"ffn_dim", ffn_dim},       {"num_heads", num_heads},
          {"num_layers", num_layers},  {"text_len", text_len},     {"experts", ex},
          {"experts_share_shards", experts_share_shards},
          {"t5_bytes", t5_bytes},      {"vae_bytes", vae_bytes},   {"run_dtype", run_bytes == 2 ? "bf16" : "fp32"},
          {"weights_dtype", weights_dtype}};
}

ModelShape model_shape_from_dir(const fs::path& dir, const std::string& weights_dtype) {
  const model::WeightsDtype weights = model::parse_weights_dtype(weights_dtype, dir.string() + ": weights_dtype");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::kModelFormat, dir.string() + ": not a directory");
  ModelShape m;
  m.dir = dir;
  // The layout (release or diffusers) as the model reads it (model/formats/model_layout.h).
  const model::formats::ModelLayout layout = model::formats::detect_model_layout(dir);
  std::vector<std::pair<std::string, fs::path>> expert_dirs;
  for (const auto& e : layout.experts) expert_dirs.emplace_back(e.name, e.dir);
  std::vector<std::string> prefixes(expert_dirs.size());
  for (std::size_t i = 0; i < expert_dirs.size(); ++i) {
    const fs::path cfg = expert_dirs[i].second / "config.json";
    ModelShape probe;
    if (fs::is_regular_file(expert_dirs[i].second, ec)) {  // comfyui: Note [Single-file config]
      const model::formats::SingleFileExpert se = model::formats::read_single_file_expert(expert_dirs[i].second);
      if (se.config.model_type != layout.model_type) {
        bad(dir / model::formats::kManifestName, "model_type \"" + layout.model_type + "\" but " +
                                                     expert_dirs[i].second.string() + " is a " + se.config.model_type +
                                                     " DiT (" + se.config.variant + ")");
      }
      apply_config(probe, se.config);
      prefixes[i] = se.prefix;
    } else {
      if (!fs::exists(cfg, ec)) throw Error(ErrorCode::kModelFormat, cfg.string() + ": missing (model config)");
      apply_config(probe, model::formats::wan_config_from_any(read_json_file(cfg), cfg.string()));  // release or diffusers
    }
    if (i == 0) {
      const auto keep_dir = m.dir;
      m = probe;
      m.dir = keep_dir;
    } else if (probe.dim != m.dim || probe.ffn_dim != m.ffn_dim || probe.num_layers != m.num_layers ||
               probe.num_heads != m.num_heads) {
      bad(cfg, "geometry differs from " + (expert_dirs[0].second / "config.json").string());
    }
  }
  if (layout.two_experts() && layout.boundary_ratio) m.boundary = *layout.boundary_ratio;  // model_index.json, manifest
  for (std::size_t i = 0; i < expert_dirs.size(); ++i) {
    bool shares = false;
    m.experts.push_back(
        read_expert(expert_dirs[i].second, expert_dirs[i].first, m.num_layers, i > 0 ? &shares : nullptr, weights,
                    prefixes[i]));
    if (shares) m.experts_share_shards = true;
  }
  m.weights_dtype = model::weights_dtype_name(weights);
  // The text encoder and VAE where the model reads them (a release file, or a diffusers
  // folder's text_encoder/ and vae/: Note [Diffusers parts]); their bytes are the files' sum.
  const model::formats::PartFiles t5 = layout.text_encoder();
  m.t5_file = t5.where;
  m.t5_bytes = t5.bytes();
  const model::formats::PartFiles vae = layout.vae(m.model_type);
  m.vae_file = vae.where;
  m.vae_bytes = vae.bytes();
  return m;
}

}  // namespace wand::sched::plan
