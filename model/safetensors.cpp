#include "model/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace wand::model {

using nlohmann::json;

namespace {
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kIo, "stat " + path + ": " + std::strerror(errno));
  }
  return static_cast<std::uint64_t>(st.st_size);
}
}  // namespace

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  const std::uint64_t size = file_size(path_);
  if (size < 8) {
    throw Error(ErrorCode::kModelFormat, path_ + ": " + std::to_string(size) +
                                             " bytes, too short for a safetensors header");
  }
  unsigned char len_le[8];
  read_exact(path_, 0, len_le, 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_le[i];
  if (n > kMaxHeaderBytes || 8 + n > size) {
    throw Error(ErrorCode::kModelFormat, path_ + ": header length " + std::to_string(n) +
                                             " does not fit a file of " + std::to_string(size) +
                                             " bytes (truncated or not safetensors)");
  }
  std::string header(n, '\0');
  read_exact(path_, 8, header.data(), n);
  json j;
  try {
    j = json::parse(header);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModelFormat, path_ + ": header is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(ErrorCode::kModelFormat, path_ + ": header is not an object");
  data_start_ = 8 + n;
  const std::uint64_t data_bytes = size - data_start_;
  std::vector<std::pair<std::uint64_t, std::string>> by_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") {
      if (it->is_object()) {
        for (auto m = it->begin(); m != it->end(); ++m) {
          if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
        }
      }
      continue;
    }
    const std::string ctx = path_ + ": tensor '" + key + "'";
    const json& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets")) {
      throw Error(ErrorCode::kModelFormat, ctx + ": entry lacks dtype/shape/data_offsets");
    }
    TensorInfo ti;
    ti.name = key;
    ti.path = path_;
    try {
      ti.dtype = parse_safetensors_dtype(e.at("dtype").get<std::string>(), ctx);
      ti.shape = e.at("shape").get<std::vector<int64_t>>();
      auto off = e.at("data_offsets").get<std::vector<std::uint64_t>>();
      if (off.size() != 2 || off[1] < off[0]) {
        throw Error(ErrorCode::kModelFormat, ctx + ": bad data_offsets");
      }
      ti.offset = data_start_ + off[0];
      ti.nbytes = off[1] - off[0];
      if (off[1] > data_bytes) {
        throw Error(ErrorCode::kModelFormat,
                    ctx + ": data ends at byte " + std::to_string(data_start_ + off[1]) +
                        " but the file has " + std::to_string(size) + " bytes (truncated)");
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& ex) {
      throw Error(ErrorCode::kModelFormat, ctx + ": " + ex.what());
    }
    for (int64_t d : ti.shape) {
      if (d < 0) throw Error(ErrorCode::kModelFormat, ctx + ": negative dimension");
    }
    if (static_cast<std::uint64_t>(ti.numel()) * dtype_size(ti.dtype) != ti.nbytes) {
      throw Error(ErrorCode::kModelFormat, ctx + ": shape and byte range disagree (" +
                                               std::to_string(ti.nbytes) + " bytes)");
    }
    by_offset.emplace_back(ti.offset, key);
    index_.emplace(key, std::move(ti));
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (auto& p : by_offset) order_.push_back(p.second);
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    throw Error(ErrorCode::kModelFormat, path_ + ": missing tensor '" + name + "'");
  }
  return it->second;
}

at::Tensor SafetensorsFile::load(const std::string& name, c10::optional<at::ScalarType> dtype) const {
  const TensorInfo& ti = info(name);
  at::Tensor t = at::empty(ti.shape, at::TensorOptions().dtype(ti.dtype));
  if (ti.nbytes) read_exact(path_, ti.offset, t.data_ptr(), ti.nbytes);
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

void SafetensorsWriter::write_header() {
  json h = json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  for (const auto& ti : decl_) {
    h[ti.name] = {{"dtype", safetensors_dtype_name(ti.dtype)},
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
