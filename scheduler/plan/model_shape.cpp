#include "scheduler/plan/model_shape.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "common/error.h"

namespace wand::sched::plan {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kHighDir = "high_noise_model";
constexpr const char* kLowDir = "low_noise_model";
constexpr const char* kIndexName = "diffusion_pytorch_model.safetensors.index.json";
constexpr const char* kT5Name = "models_t5_umt5-xxl-enc-bf16.pth";
constexpr const char* kVae21Name = "Wan2.1_VAE.pth";
constexpr const char* kVae22Name = "Wan2.2_VAE.pth";
// A header larger than this is not a safetensors header (the A14B shards have ~100 KB).
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void bad(const fs::path& file, const std::string& why) {
  throw Error(ErrorCode::kModelFormat, file.string() + ": " + why);
}

std::uint64_t file_size_or_throw(const fs::path& file, const std::string& what) {
  std::error_code ec;
  const auto n = fs::file_size(file, ec);
  if (ec) throw Error(ErrorCode::kModelFormat, file.string() + ": " + what + " missing or unreadable (" + ec.message() + ")");
  return n;
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

std::int64_t get_int(const json& j, const char* key, const fs::path& file) {
  if (!j.contains(key) || !j[key].is_number_integer()) bad(file, std::string("missing integer field '") + key + "'");
  const auto v = j[key].get<std::int64_t>();
  if (v <= 0) bad(file, std::string("field '") + key + "' must be positive, got " + std::to_string(v));
  // Note [Config maxima] (model/wan_config.cpp): the same bounds.
  const std::string k = key;
  const std::int64_t max = k == "num_layers" || k == "num_heads" ? 1024 : k == "text_len" ? 8192
                           : k == "in_dim" || k == "out_dim"     ? 4096 : (1 << 17);
  if (v > max) {
    bad(file, std::string("field '") + key + "' is " + std::to_string(v) + ", more than the maximum " +
                  std::to_string(max));
  }
  return v;
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

ExpertShape read_expert(const fs::path& dir, const std::string& name, std::int64_t num_layers, bool* shares_with_high) {
  ExpertShape e;
  e.name = name;
  e.dir = dir;
  e.block_params.assign(static_cast<std::size_t>(num_layers), 0);
  e.block_stored_bytes.assign(static_cast<std::size_t>(num_layers), 0);
  std::set<std::string> dtypes;
  for (const fs::path& shard : shard_files(dir)) {
    if (shares_with_high && shard.lexically_normal().string().find(std::string("/") + kHighDir + "/") != std::string::npos) {
      *shares_with_high = true;
    }
    for (const TensorInfo& t : read_safetensors_header(shard)) {
      std::uint64_t params = 1;
      for (auto d : t.shape) params *= static_cast<std::uint64_t>(d);
      dtypes.insert(t.dtype);
      const std::int64_t b = block_index(t.name);
      if (b >= 0) {
        if (b >= num_layers) {
          bad(shard, "tensor " + t.name + " has block index " + std::to_string(b) + " but config.json says num_layers " +
                         std::to_string(num_layers));
        }
        e.block_params[static_cast<std::size_t>(b)] += params;
        e.block_stored_bytes[static_cast<std::size_t>(b)] += t.bytes;
      } else {
        e.non_block_params += params;
        e.non_block_stored_bytes += t.bytes;
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

void apply_config(ModelShape& m, const json& j, const fs::path& file) {
  if (!j.is_object()) bad(file, "not a JSON object");
  if (j.contains("_class_name") && j["_class_name"] != "WanModel") {
    bad(file, "_class_name is " + j["_class_name"].dump() + ", expected \"WanModel\"");
  }
  if (!j.contains("model_type") || !j["model_type"].is_string()) bad(file, "missing string field 'model_type'");
  m.model_type = j["model_type"].get<std::string>();
  if (m.model_type != "t2v" && m.model_type != "i2v" && m.model_type != "ti2v") {
    bad(file, "model_type '" + m.model_type + "' is not t2v, i2v or ti2v");
  }
  m.dim = get_int(j, "dim", file);
  m.ffn_dim = get_int(j, "ffn_dim", file);
  m.num_heads = get_int(j, "num_heads", file);
  m.num_layers = get_int(j, "num_layers", file);
  m.in_dim = get_int(j, "in_dim", file);
  m.out_dim = get_int(j, "out_dim", file);
  m.text_len = get_int(j, "text_len", file);
  if (j.contains("text_dim")) m.text_dim = get_int(j, "text_dim", file);
  if (m.dim % m.num_heads != 0) {
    bad(file, "dim " + std::to_string(m.dim) + " is not a multiple of num_heads " + std::to_string(m.num_heads));
  }
  // The family constants of model/wan_config.cpp (apply_family, derive_variant).
  if (m.model_type == "t2v") {
    m.boundary = 0.875;
    m.sample_shift = 12.0;
    m.sample_steps = 40;
  } else if (m.model_type == "i2v") {
    m.boundary = 0.9;
    m.sample_shift = 5.0;
    m.sample_steps = 40;
  } else {
    m.boundary = 0.0;
    m.sample_shift = 5.0;
    m.sample_steps = 50;
    m.vae_stride_h = m.vae_stride_w = 16;
    m.default_frames = 121;
    m.default_height = 704;
  }
  if (m.model_type == "t2v" && m.in_dim == 16 && m.dim == 5120) {
    m.variant = "t2v-A14B";
  } else if (m.model_type == "i2v" && m.in_dim == 36 && m.dim == 5120) {
    m.variant = "i2v-A14B";
  } else if (m.model_type == "ti2v" && m.in_dim == 48 && m.dim == 3072) {
    m.variant = "ti2v-5B";
  } else {
    m.variant = (m.dim <= 256 ? "tiny-" : "custom-") + m.model_type;
  }
}

}  // namespace

int safetensors_dtype_bytes(const std::string& dtype, const std::string& where) {
  static const std::map<std::string, int> kSizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},
                                                    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
                                                    {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = kSizes.find(dtype);
  if (it == kSizes.end()) throw Error(ErrorCode::kModelFormat, where + ": unknown safetensors dtype '" + dtype + "'");
  return it->second;
}

std::vector<TensorInfo> read_safetensors_header(const fs::path& file) {
  const std::uint64_t size = file_size_or_throw(file, "safetensors shard");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, file.string() + ": cannot open");
  if (size < 8) bad(file, "truncated safetensors header: file has " + std::to_string(size) + " bytes, fewer than the 8-byte length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];  // little-endian
  if (n > kMaxHeaderBytes || n > size - 8) {
    bad(file, "truncated safetensors header: length field says " + std::to_string(n) + " bytes, the file has " +
                  std::to_string(size - 8) + " after it");
  }
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (static_cast<std::uint64_t>(in.gcount()) != n) bad(file, "short read of the safetensors header");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad(file, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad(file, "safetensors header is not a JSON object");
  const std::uint64_t data_bytes = size - 8 - n;
  std::vector<TensorInfo> out;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") continue;
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      bad(file, "header entry '" + name + "' lacks dtype / shape / data_offsets");
    }
    TensorInfo t;
    t.name = name;
    t.dtype = v["dtype"].get<std::string>();
    std::uint64_t elems = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) bad(file, "header entry '" + name + "' has a bad shape");
      t.shape.push_back(d.get<std::int64_t>());
      elems *= static_cast<std::uint64_t>(t.shape.back());
    }
    const auto b = v["data_offsets"][0].get<std::uint64_t>(), e = v["data_offsets"][1].get<std::uint64_t>();
    if (e < b) bad(file, "header entry '" + name + "' has data_offsets end < begin");
    t.bytes = e - b;
    const std::uint64_t want = elems * static_cast<std::uint64_t>(safetensors_dtype_bytes(t.dtype, file.string()));
    if (t.bytes != want) {
      bad(file, "header entry '" + name + "' spans " + std::to_string(t.bytes) + " bytes, its shape and dtype " + t.dtype +
                    " need " + std::to_string(want));
    }
    if (e > data_bytes) {
      bad(file, "tensor '" + name + "' ends at data byte " + std::to_string(e) + " but the file holds only " +
                    std::to_string(data_bytes) + " data bytes (truncated)");
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::uint64_t ExpertShape::stored_bytes() const {
  std::uint64_t n = non_block_stored_bytes;
  for (auto b : block_stored_bytes) n += b;
  return n;
}

std::uint64_t ModelShape::max_block_run_bytes() const {
  std::uint64_t m = 0;
  for (const auto& e : experts) {
    for (auto p : e.block_params) m = std::max<std::uint64_t>(m, p * static_cast<std::uint64_t>(run_bytes));
  }
  return m;
}

std::uint64_t ModelShape::blocks_run_bytes(std::size_t e) const {
  std::uint64_t n = 0;
  for (auto p : experts.at(e).block_params) n += p * static_cast<std::uint64_t>(run_bytes);
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
                  {"block_run_bytes", e.block_params.empty() ? 0 : e.block_params[0] * run_bytes},
                  {"non_block_run_bytes", non_block_run_bytes(i)}});
  }
  return {{"dir", dir.string()},       {"variant", variant},       {"model_type", model_type},
          {"dim", dim},                {"ffn_dim", ffn_dim},       {"num_heads", num_heads},
          {"num_layers", num_layers},  {"text_len", text_len},     {"experts", ex},
          {"experts_share_shards", experts_share_shards},
          {"t5_bytes", t5_bytes},      {"vae_bytes", vae_bytes},   {"run_dtype", run_bytes == 2 ? "bf16" : "fp32"}};
}

ModelShape model_shape_from_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::kModelFormat, dir.string() + ": not a directory");
  ModelShape m;
  m.dir = dir;
  const bool a14b = fs::exists(dir / kHighDir / "config.json", ec) || fs::exists(dir / kLowDir / "config.json", ec);
  std::vector<std::pair<std::string, fs::path>> expert_dirs;
  if (a14b) {
    expert_dirs = {{kHighDir, dir / kHighDir}, {kLowDir, dir / kLowDir}};
  } else {
    expert_dirs = {{"", dir}};
  }
  for (std::size_t i = 0; i < expert_dirs.size(); ++i) {
    const fs::path cfg = expert_dirs[i].second / "config.json";
    if (!fs::exists(cfg, ec)) throw Error(ErrorCode::kModelFormat, cfg.string() + ": missing (model config)");
    ModelShape probe;
    apply_config(probe, read_json_file(cfg), cfg);
    if (i == 0) {
      const auto keep_dir = m.dir;
      m = probe;
      m.dir = keep_dir;
    } else if (probe.dim != m.dim || probe.ffn_dim != m.ffn_dim || probe.num_layers != m.num_layers ||
               probe.num_heads != m.num_heads) {
      bad(cfg, "geometry differs from " + (expert_dirs[0].second / "config.json").string());
    }
  }
  for (std::size_t i = 0; i < expert_dirs.size(); ++i) {
    bool shares = false;
    m.experts.push_back(read_expert(expert_dirs[i].second, expert_dirs[i].first, m.num_layers, i > 0 ? &shares : nullptr));
    if (shares) m.experts_share_shards = true;
  }
  m.t5_file = dir / kT5Name;
  m.t5_bytes = file_size_or_throw(m.t5_file, "umT5 checkpoint");
  m.vae_file = dir / (m.model_type == "ti2v" ? kVae22Name : kVae21Name);
  m.vae_bytes = file_size_or_throw(m.vae_file, "VAE checkpoint");
  return m;
}

}  // namespace wand::sched::plan
