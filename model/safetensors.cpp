#include "model/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/fp8.h"
#include "model/safetensors_header.h"
#include "model/weight_storage.h"

namespace wand::model {

using nlohmann::json;

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  // The header is parsed and checked by the one reader the planner uses too
  // (model/safetensors_header.h); here its entries become TensorInfo with LibTorch dtypes.
  const SafetensorsHeader h = read_safetensors_header(path_);
  data_start_ = h.data_start;
  metadata_ = h.metadata;
  std::vector<std::pair<std::uint64_t, std::string>> by_offset;
  for (const SafetensorsEntry& e : h.entries) {
    TensorInfo ti;
    ti.name = e.name;
    ti.path = path_;
    if (e.dtype == "F8_E4M3") {
      ti.dtype = at::kByte;
      ti.fp8 = true;
    } else {
      ti.dtype = parse_safetensors_dtype(e.dtype, path_ + ": tensor '" + e.name + "'");
    }
    ti.shape = e.shape;
    ti.offset = data_start_ + e.begin;
    ti.nbytes = e.bytes();
    by_offset.emplace_back(ti.offset, e.name);
    index_.emplace(e.name, std::move(ti));
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (auto& p : by_offset) order_.push_back(p.second);

  // Scales of fp8_scaled files (Note [fp8 dequantization]).
  const bool marker = index_.count(kFp8MarkerKey) != 0;
  for (const auto& [name, ti] : index_) {
    if (is_fp8_scale_key(name)) {
      const std::string w = fp8_weight_key_of(name);
      auto it = index_.find(w);
      if (it == index_.end()) continue;  // a scale of nothing: ignored with the other aux keys
      if (ti.fp8 || (ti.dtype != at::kFloat && ti.dtype != at::kHalf && ti.dtype != at::kBFloat16)) {
        throw Error(ErrorCode::kModelFormat, path_ + ": scale '" + name + "' of '" + w +
                                                 "' must be F32, F16 or BF16");
      }
      const std::int64_t rows = it->second.shape.empty() ? 1 : it->second.shape[0];
      if (ti.numel() != 1 && ti.numel() != rows) {
        throw Error(ErrorCode::kModelFormat, path_ + ": scale '" + name + "' has " + std::to_string(ti.numel()) +
                                                 " elements; '" + w + "' needs 1 (per tensor) or " +
                                                 std::to_string(rows) + " (per row)");
      }
      scale_of_[w] = name;
    }
  }
  for (const auto& [name, ti] : index_) {
    if (!ti.fp8 || is_fp8_aux_key(name)) continue;
    if (marker && !scale_of_.count(name)) {
      throw Error(ErrorCode::kModelFormat, path_ + ": fp8 weight '" + name + "' has no scale: the file has the '" +
                                               kFp8MarkerKey + "' marker of an fp8_scaled file but no '" +
                                               fp8_scale_key_of(name) + "'");
    }
  }
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    throw Error(ErrorCode::kModelFormat, path_ + ": missing tensor '" + name + "'");
  }
  return it->second;
}

at::Tensor SafetensorsFile::load_stored(const std::string& name) const {
  const TensorInfo& ti = info(name);
  at::Tensor t = at::empty(ti.shape, at::TensorOptions().dtype(ti.dtype));
  if (ti.nbytes) read_exact(path_, ti.offset, t.data_ptr(), ti.nbytes);
  return t;
}

at::Tensor SafetensorsFile::load_scale(const std::string& name) const {
  auto it = scale_of_.find(name);
  if (it == scale_of_.end()) return at::ones({}, at::kFloat);
  at::Tensor s = load_stored(it->second).to(at::kFloat);
  if (s.numel() == 1) return s.reshape({});
  return s.reshape({s.numel(), 1});
}

at::Tensor SafetensorsFile::load(const std::string& name, c10::optional<at::ScalarType> dtype) const {
  const TensorInfo& ti = info(name);
  at::Tensor t = load_stored(name);
  if (ti.fp8) return fp8_dequantize(t, load_scale(name), dtype ? *dtype : at::kFloat);
  if (has_scale(name)) {  // a scale beside a weight in another dtype (ComfyUI multiplies it too)
    at::Tensor sc = load_scale(name);
    if (sc.dim() > 0) {
      std::vector<std::int64_t> shape(static_cast<std::size_t>(t.dim()), 1);
      shape[0] = sc.size(0);
      sc = sc.reshape(shape);
    }
    return (t.to(at::kFloat) * sc).to(dtype ? *dtype : ti.dtype);
  }
  if (dtype && *dtype != ti.dtype) t = t.to(*dtype);
  return t;
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  SafetensorsFile f(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& n : f.names()) out.emplace(n, f.load(n));
  return out;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::map<std::string, std::string> metadata)
    : path_(std::move(path)), metadata_(std::move(metadata)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_) std::fclose(f_);
}

void SafetensorsWriter::declare(const std::string& name, at::ScalarType dtype,
                                std::vector<int64_t> shape) {
  if (header_written_) {
    throw Error(ErrorCode::kInternal, path_ + ": declare '" + name + "' after data was written");
  }
  TensorInfo ti;
  ti.name = name;
  ti.dtype = dtype;
  ti.shape = std::move(shape);
  ti.offset = data_bytes_;
  ti.nbytes = static_cast<std::uint64_t>(ti.numel()) * dtype_size(dtype);
  data_bytes_ += ti.nbytes;
  decl_.push_back(std::move(ti));
}

void SafetensorsWriter::declare_fp8(const std::string& name, std::vector<int64_t> shape) {
  declare(name, at::kByte, std::move(shape));
  decl_.back().fp8 = true;
}

void SafetensorsWriter::write_header() {
  json h = json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  for (const auto& ti : decl_) {
    h[ti.name] = {{"dtype", ti.fp8 ? std::string("F8_E4M3") : safetensors_dtype_name(ti.dtype)},
                  {"shape", ti.shape},
                  {"data_offsets", {ti.offset, ti.offset + ti.nbytes}}};
  }
  std::string s = h.dump();
  while (s.size() % 8) s.push_back(' ');
  f_ = std::fopen(path_.c_str(), "wb");
  if (!f_) throw Error(ErrorCode::kIo, "create " + path_ + ": " + std::strerror(errno));
  unsigned char len_le[8];
  std::uint64_t n = s.size();
  for (int i = 0; i < 8; ++i) len_le[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  if (std::fwrite(len_le, 1, 8, f_) != 8 || std::fwrite(s.data(), 1, s.size(), f_) != s.size()) {
    throw Error(ErrorCode::kIo, "write " + path_ + ": " + std::strerror(errno));
  }
  header_written_ = true;
}

void SafetensorsWriter::write_bytes(const std::string& name, const void* data, std::uint64_t nbytes) {
  if (!header_written_) write_header();
  if (next_ >= decl_.size() || decl_[next_].name != name) {
    throw Error(ErrorCode::kInternal, path_ + ": write '" + name + "' out of declared order");
  }
  const TensorInfo& ti = decl_[next_];
  if (written_in_current_ + nbytes > ti.nbytes) {
    throw Error(ErrorCode::kInternal, path_ + ": too many bytes for '" + name + "'");
  }
  if (nbytes && std::fwrite(data, 1, nbytes, f_) != nbytes) {
    throw Error(ErrorCode::kIo, "write " + path_ + ": " + std::strerror(errno));
  }
  written_in_current_ += nbytes;
  if (written_in_current_ == ti.nbytes) {
    ++next_;
    written_in_current_ = 0;
  }
}

void SafetensorsWriter::write(const std::string& name, const at::Tensor& t) {
  if (next_ >= decl_.size()) {
    throw Error(ErrorCode::kInternal, path_ + ": write '" + name + "' was not declared");
  }
  const TensorInfo& ti = decl_[next_];
  if (t.scalar_type() != ti.dtype || t.sizes().vec() != ti.shape) {
    throw Error(ErrorCode::kInternal, path_ + ": '" + name + "' does not match its declaration");
  }
  at::Tensor c = t.contiguous().cpu();
  write_bytes(name, c.data_ptr(), ti.nbytes);
}

void SafetensorsWriter::finish() {
  if (finished_) return;
  if (!header_written_) write_header();
  if (next_ != decl_.size()) {
    throw Error(ErrorCode::kInternal, path_ + ": finish with " + std::to_string(decl_.size() - next_) +
                                          " declared tensors unwritten");
  }
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    throw Error(ErrorCode::kIo, "close " + path_ + ": " + std::strerror(errno));
  }
  f_ = nullptr;
  finished_ = true;
}

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      std::map<std::string, std::string> metadata) {
  SafetensorsWriter w(path, std::move(metadata));
  for (const auto& [name, t] : tensors) w.declare(name, t.scalar_type(), t.sizes().vec());
  for (const auto& [name, t] : tensors) w.write(name, t);
  w.finish();
}

}  // namespace wand::model
