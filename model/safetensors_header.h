// The header of a .safetensors file, read without LibTorch: the one parser behind the
// model's SafetensorsFile (model/safetensors.h) and the planner's ModelShape
// (scheduler/plan/model_shape.h), so both accept and refuse the same files.
//
//   SafetensorsHeader h = read_safetensors_header("diffusion_pytorch_model-00001-of-00006.safetensors");
//   for (const SafetensorsEntry& e : h.entries) e.name, e.dtype, e.shape, h.data_start + e.begin;
//
// Format: u64 little-endian header length n, n bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the raw
// bytes (offsets relative to the end of the header). Checked here: the length field fits
// the file, the JSON is an object, every entry has a known dtype, a non-negative shape and
// a byte range of exactly shape x dtype inside the file. Every refusal is
// Error(kModelFormat) naming the file (and the tensor); a file that cannot be opened is
// Error(kIo).
// Free functions and plain values; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace wand::model {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;                // "F32", "BF16", "F8_E4M3", ...
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // data_offsets, relative to data_start
  std::uint64_t bytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::string path;
  std::uint64_t file_bytes = 0;
  std::uint64_t data_start = 0;              // 8 + header length
  std::vector<SafetensorsEntry> entries;     // in header (JSON object) order
  std::map<std::string, std::string> metadata;  // "__metadata__" string values
};

SafetensorsHeader read_safetensors_header(const std::string& path);

// Element size of a safetensors dtype string; throws Error(kModelFormat) naming `where`
// for an unknown one.
int safetensors_dtype_bytes(const std::string& dtype, const std::string& where);

}  // namespace wand::model
