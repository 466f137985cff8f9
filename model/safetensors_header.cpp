#include "model/safetensors_header.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "common/error.h"

namespace wand::model {

namespace {

using nlohmann::json;

// A header larger than this is not a safetensors header (the format's own limit; the
// A14B shards have ~100 KB).
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void bad(const std::string& file, const std::string& why) {
  throw Error(ErrorCode::kModelFormat, file + ": " + why);
}

}  // namespace

int safetensors_dtype_bytes(const std::string& dtype, const std::string& where) {
  static const std::map<std::string, int> kSizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},
                                                    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
                                                    {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = kSizes.find(dtype);
  if (it == kSizes.end()) bad(where, "unknown safetensors dtype '" + dtype + "'");
  return it->second;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  SafetensorsHeader h;
  h.path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kIo, path + ": cannot open safetensors file (" + std::strerror(errno) + ")");
  }
  h.file_bytes = static_cast<std::uint64_t>(st.st_size);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, path + ": cannot open safetensors file");
  if (h.file_bytes < 8) {
    bad(path, "truncated safetensors header: file has " + std::to_string(h.file_bytes) +
                  " bytes, fewer than the 8-byte length");
  }
  unsigned char len_le[8];
  in.read(reinterpret_cast<char*>(len_le), 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_le[i];  // little-endian
  if (n > kMaxHeaderBytes || n > h.file_bytes - 8) {
    bad(path, "truncated safetensors header: length field says " + std::to_string(n) + " bytes, the file has " +
                  std::to_string(h.file_bytes - 8) + " after it (truncated or not safetensors)");
  }
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (static_cast<std::uint64_t>(in.gcount()) != n) bad(path, "short read of the safetensors header");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad(path, std::string("safetensors header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad(path, "safetensors header is not a JSON object");
  h.data_start = 8 + n;
  const std::uint64_t data_bytes = h.file_bytes - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = *it;
    if (name == "__metadata__") {
      if (v.is_object()) {
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (m->is_string()) h.metadata[m.key()] = m->get<std::string>();
        }
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2 || !v["data_offsets"][0].is_number_unsigned() ||
        !v["data_offsets"][1].is_number_unsigned()) {
      bad(path, "header entry '" + name + "' lacks dtype / shape / data_offsets");
    }
    SafetensorsEntry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    std::uint64_t elems = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) bad(path, "header entry '" + name + "' has a bad shape");
      e.shape.push_back(d.get<std::int64_t>());
      elems *= static_cast<std::uint64_t>(e.shape.back());
    }
    e.begin = v["data_offsets"][0].get<std::uint64_t>();
    e.end = v["data_offsets"][1].get<std::uint64_t>();
    if (e.end < e.begin) bad(path, "header entry '" + name + "' has data_offsets end < begin");
    const std::uint64_t want = elems * static_cast<std::uint64_t>(safetensors_dtype_bytes(e.dtype, where));
    if (e.bytes() != want) {
      bad(path, "header entry '" + name + "' spans " + std::to_string(e.bytes()) + " bytes, its shape and dtype " +
                    e.dtype + " need " + std::to_string(want));
    }
    if (e.end > data_bytes) {
      bad(path, "tensor '" + name + "' ends at data byte " + std::to_string(e.end) + " but the file holds only " +
                    std::to_string(data_bytes) + " data bytes (truncated)");
    }
    h.entries.push_back(std::move(e));
  }
  return h;
}

}  // namespace wand::model
