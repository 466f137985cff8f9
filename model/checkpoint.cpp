#include "model/checkpoint.h"

#include <fstream>
#include <set>

#include "common/error.h"
#include "common/log.h"

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
  if (!fs::is_directory(dir_)) throw Error(ErrorCode::kNotFound, dir_.string() + ": not a directory");
  const fs::path cfg_path = dir_ / "config.json";
  if (!fs::exists(cfg_path)) throw Error(ErrorCode::kModelFormat, cfg_path.string() + ": missing");
  config_ = WanConfig::from_checkpoint(read_json(cfg_path), cfg_path.string());

  const fs::path index_path = dir_ / kIndexName;
  std::map<std::string, std::string> key_to_shard;  // key -> resolved shard path
  std::string map_source;                            // file that maps keys (for messages)
  if (fs::exists(index_path)) {
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
  if (key_to_shard.empty()) {
    const SafetensorsFile* f = open_shard(map_source);
    for (const auto& n : f->names()) where_[n] = f;
  } else {
    for (const auto& [key, path] : key_to_shard) {
      const SafetensorsFile* f = open_shard(path);
      if (!f->contains(key)) {
        throw Error(ErrorCode::kModelFormat, path + ": key '" + key + "' listed in " + map_source + " is not in the shard");
      }
      where_[key] = f;
    }
  }

  // Strict validation against the config.
  const auto expected = config_.expected_tensors();
  std::set<std::string> expected_names;
  for (const auto& [name, shape] : expected) {
    expected_names.insert(name);
    auto it = where_.find(name);
    if (it == where_.end()) {
      throw Error(ErrorCode::kModelFormat, map_source + ": missing key '" + name + "' (expected shape " +
                                               shape_str(shape) + ")");
    }
    const TensorInfo& ti = it->second->info(name);
    if (ti.shape != shape) {
      throw Error(ErrorCode::kModelFormat, ti.path + ": key '" + name + "' has shape " + shape_str(ti.shape) +
                                               ", expected " + shape_str(shape));
    }
    if (!at::isFloatingType(ti.dtype)) {
      throw Error(ErrorCode::kModelFormat, ti.path + ": key '" + name + "' has a non-floating dtype");
    }
    names_.push_back(name);
  }
  for (const auto& [name, f] : where_) {
    if (!expected_names.count(name)) {
      throw Error(ErrorCode::kModelFormat, f->describe() + ": unexpected key '" + name + "' for a " + config_.variant +
                                               " model with " + std::to_string(config_.num_layers) + " layers");
    }
  }
  // Shards of a shared index may hold more keys than the map names (never for our writer); ignore them.
  uint64_t bytes = 0;
  for (const auto& n : names_) bytes += where_.at(n)->info(n).nbytes;
  log::get("model")->info("checkpoint dir={} shards={} tensors={} bytes={}", dir_.string(), shards_.size(),
                          names_.size(), format_bytes(bytes));
}

std::vector<std::string> CheckpointDir::shard_paths() const {
  std::vector<std::string> v;
  for (const auto& [p, f] : shards_) v.push_back(p);
  return v;
}

const TensorInfo& CheckpointDir::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(ErrorCode::kModelFormat, dir_.string() + ": no key '" + name + "'");
  return it->second->info(name);
}

at::Tensor CheckpointDir::load(const std::string& name, c10::optional<at::ScalarType> dtype) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(ErrorCode::kModelFormat, dir_.string() + ": no key '" + name + "'");
  return it->second->load(name, dtype);
}

}  // namespace wand::model
