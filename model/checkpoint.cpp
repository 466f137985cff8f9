#include "model/checkpoint.h"

#include <fstream>
#include <set>

#include "common/error.h"
#include "common/log.h"
#include "model/formats/diffusers_keys.h"
#include "model/formats/single_file.h"
#include "model/weight_storage.h"

namespace wand::model {

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(ErrorCode::kNotFound, p.string() + ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModelFormat, p.string() + ": not valid JSON: " + e.what());
  }
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

CheckpointDir::CheckpointDir(fs::path dir) : dir_(std::move(dir)) {
  // A single-file expert (ComfyUI; Note [Single-file config]): the config from its shapes,
  // release names under an optional prefix.
  const bool single = fs::is_regular_file(dir_);
  if (!single && !fs::is_directory(dir_)) throw Error(ErrorCode::kNotFound, dir_.string() + ": not a directory");
  std::string prefix;
  if (single) {
    const formats::SingleFileExpert e = formats::read_single_file_expert(dir_);
    config_ = e.config;
    prefix = e.prefix;
  } else {
    const fs::path cfg_path = dir_ / "config.json";
    if (!fs::exists(cfg_path)) throw Error(ErrorCode::kModelFormat, cfg_path.string() + ": missing");
    const nlohmann::json cj = read_json(cfg_path);
    diffusers_ = formats::is_diffusers_dit_config(cj);
    config_ = formats::wan_config_from_any(cj, cfg_path.string());
  }

  const fs::path index_path = dir_ / kIndexName;
  std::map<std::string, std::string> key_to_shard;  // key -> resolved shard path
  std::string map_source;                            // file that maps keys (for messages)
  if (single) {
    map_source = dir_.string();
  } else if (fs::exists(index_path)) {
    map_source = index_path.string();
    nlohmann::json idx = read_json(index_path);
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object()) {
      throw Error(ErrorCode::kModelFormat, map_source + ": no \"weight_map\" object");
    }
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        throw Error(ErrorCode::kModelFormat, map_source + ": weight_map entry for key '" + it.key() + "' is not a string");
      }
      const fs::path shard = (dir_ / it.value().get<std::string>()).lexically_normal();
      key_to_shard[it.key()] = shard.string();
    }
  } else if (fs::exists(dir_ / kSingleName)) {
    map_source = (dir_ / kSingleName).string();
  } else {
    throw Error(ErrorCode::kModelFormat, dir_.string() + ": neither " + kIndexName + " nor " + kSingleName);
  }

  // Open every shard (header only; SafetensorsFile checks the file size against the header).
  auto open_shard = [&](const std::string& path) -> const SafetensorsFile* {
    auto it = shards_.find(path);
    if (it != shards_.end()) return it->second.get();
    if (!fs::exists(path)) throw Error(ErrorCode::kModelFormat, map_source + ": shard " + path + " is missing");
    auto f = std::make_unique<SafetensorsFile>(path);
    const SafetensorsFile* p = f.get();
    shards_.emplace(path, std::move(f));
    return p;
  };
  // The shards' own key names (file_where: file key -> shard).
  std::map<std::string, const SafetensorsFile*> file_where;
  if (key_to_shard.empty()) {
    const SafetensorsFile* f = open_shard(map_source);
    for (const auto& n : f->names()) file_where[n] = f;
  } else {
    for (const auto& [key, path] : key_to_shard) {
      const SafetensorsFile* f = open_shard(path);
      if (!f->contains(key)) {
        throw Error(ErrorCode::kModelFormat, path + ": key '" + key + "' listed in " + map_source + " is not in the shard");
      }
      file_where[key] = f;
    }
  }

  // Renaming (Note [Diffusers DiT keys]): file key -> wand's (release) key.
  const std::map<std::string, std::string> rename =
      diffusers_ ? formats::diffusers_dit_key_map(config_) : std::map<std::string, std::string>{};
  const std::string naming = diffusers_ ? std::string(" (diffusers ") + formats::kDiffusersDitClass + ")" : "";
  for (const auto& [fkey, f] : file_where) {
    if (is_fp8_aux_key(fkey)) continue;  // scales and the marker of fp8_scaled files (SafetensorsFile)
    std::string key = fkey;
    if (!prefix.empty()) {
      if (fkey.compare(0, prefix.size(), prefix) != 0) {
        throw Error(ErrorCode::kModelFormat, f->describe() + ": unexpected key '" + fkey + "' (the other keys are under '" +
                                                 prefix + "')");
      }
      key = fkey.substr(prefix.size());
    }
    if (diffusers_) {
      auto it = rename.find(fkey);
      if (it == rename.end()) {
        throw Error(ErrorCode::kModelFormat, f->describe() + ": unexpected key '" + fkey + "' for a " + config_.variant +
                                                 naming + " model with " + std::to_string(config_.num_layers) +
                                                 " layers");
      }
      key = it->second;
    }
    where_[key] = f;
    file_key_[key] = fkey;
  }

  // Strict validation against the config.
  const auto expected = config_.expected_tensors();
  std::set<std::string> expected_names;
  for (const auto& [name, shape] : expected) {
    expected_names.insert(name);
    auto it = where_.find(name);
    const std::string fname = diffusers_ ? formats::diffusers_dit_key(name) : prefix + name;
    const std::string shown = diffusers_ ? "'" + fname + "' (wand's '" + name + "')" : "'" + name + "'";
    if (it == where_.end()) {
      throw Error(ErrorCode::kModelFormat, map_source + ": missing key " + shown + naming + " (expected shape " +
                                               shape_str(shape) + ")");
    }
    TensorInfo ti = it->second->info(fname);
    if (ti.shape != shape) {
      throw Error(ErrorCode::kModelFormat, ti.path + ": key " + shown + " has shape " + shape_str(ti.shape) +
                                               ", expected " + shape_str(shape));
    }
    // fp8_e4m3fn is read with its scale (SafetensorsFile; Note [fp8 stored dtype]); other
    // storage dtypes are not DiT weights.
    if (!ti.fp8 && ti.dtype != at::kFloat && ti.dtype != at::kHalf && ti.dtype != at::kBFloat16) {
      throw Error(ErrorCode::kModelFormat, ti.path + ": key " + shown + " is stored as " +
                                               safetensors_dtype_name(ti.dtype) +
                                               "; DiT weights must be F32, F16, BF16 or F8_E4M3");
    }
    ti.name = name;  // the weight store and the DiT look tensors up by wand's names
    info_.emplace(name, std::move(ti));
    names_.push_back(name);
  }
  for (const auto& [name, f] : where_) {
    if (!expected_names.count(name)) {
      throw Error(ErrorCode::kModelFormat, f->describe() + ": unexpected key '" + file_key_.at(name) + "' for a " +
                                               config_.variant + naming + " model with " +
                                               std::to_string(config_.num_layers) + " layers");
    }
  }
  // Shards of a shared index may hold more keys than the map names (never for our writer); ignore them.
  uint64_t bytes = 0;
  for (const auto& n : names_) bytes += info_.at(n).nbytes;
  log::get("model")->info("checkpoint dir={} layout={} shards={} tensors={} bytes={}", dir_.string(), layout(),
                          shards_.size(), names_.size(), format_bytes(bytes));
}

std::vector<std::string> CheckpointDir::shard_paths() const {
  std::vector<std::string> v;
  for (const auto& [p, f] : shards_) v.push_back(p);
  return v;
}

const TensorInfo& CheckpointDir::info(const std::string& name) const {
  auto it = info_.find(name);
  if (it == info_.end()) throw Error(ErrorCode::kModelFormat, dir_.string() + ": no key '" + name + "'");
  return it->second;
}

at::Tensor CheckpointDir::load(const std::string& name, c10::optional<at::ScalarType> dtype) const {
  return shard_of(name).load(file_key_.at(name), dtype);
}

const SafetensorsFile& CheckpointDir::shard_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end() || !info_.count(name)) {
    throw Error(ErrorCode::kModelFormat, dir_.string() + ": no key '" + name + "'");
  }
  return *it->second;
}

at::Tensor CheckpointDir::load_stored(const std::string& name) const {
  return shard_of(name).load_stored(file_key_.at(name));
}

bool CheckpointDir::has_scale(const std::string& name) const { return shard_of(name).has_scale(file_key_.at(name)); }

at::Tensor CheckpointDir::load_scale(const std::string& name) const {
  return shard_of(name).load_scale(file_key_.at(name));
}

}  // namespace wand::model
