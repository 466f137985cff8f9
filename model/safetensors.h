// safetensors: reader and streaming writer.
//
//   SafetensorsFile f("diffusion_pytorch_model-00001-of-00006.safetensors");
//   at::Tensor w = f.load("blocks.0.ffn.0.weight", at::kBFloat16);
//
//   SafetensorsWriter w(path, {{"format", "pt"}});
//   w.declare("a", at::kFloat, {2, 3});  ...          // every tensor first
//   w.write("a", tensor);                              // then data, in declared order
//   w.finish();
//
// Format: u64 little-endian header length n, n bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the raw bytes (offsets relative to the end of the header).
//
// fp8 (Note [fp8 dequantization], model/fp8.h): an F8_E4M3 tensor has TensorInfo dtype kByte
// and fp8 = true; load() returns its values, decode x scale, where the scale is the file's
// "<layer>.scale_weight" (ComfyUI's fp8_scaled files) or 1 (plain fp8_e4m3fn files). A file
// with the "scaled_fp8" marker must carry a scale for every fp8 weight; a scale must be one
// number or one a row, in F32/F16/BF16. Anything else is refused at open naming the file and
// the key. A scale beside a weight in another dtype multiplies it too (as ComfyUI does).
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tensor_source.h"

namespace wand::model {

class SafetensorsFile : public TensorSource {
 public:
  // Parses and validates the header (dtype, shape vs byte range, file size).
  explicit SafetensorsFile(std::string path);

  std::vector<std::string> names() const override { return order_; }
  bool contains(const std::string& name) const override { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const override;
  at::Tensor load(const std::string& name,
                  c10::optional<at::ScalarType> dtype = c10::nullopt) const override;
  std::string describe() const override { return path_; }

  // The stored elements as they are in the file (kByte codes for fp8), without the scale.
  at::Tensor load_stored(const std::string& name) const;
  // Whether `name` has a "<layer>.scale_weight" beside it, and that scale as fp32, shaped []
  // (one number) or [R, 1] (one a row); a tensor without one gets the 0-dim 1.
  bool has_scale(const std::string& name) const { return scale_of_.count(name) != 0; }
  at::Tensor load_scale(const std::string& name) const;
  bool scaled_fp8_marker() const { return index_.count("scaled_fp8") != 0; }

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::uint64_t data_start() const { return data_start_; }

 private:
  std::string path_;
  std::uint64_t data_start_ = 0;
  std::vector<std::string> order_;  // by data offset
  std::unordered_map<std::string, TensorInfo> index_;
  std::map<std::string, std::string> metadata_;
  std::unordered_map<std::string, std::string> scale_of_;  // weight key -> its scale key
};

// Loads every tensor of a file (small files: golden inputs).
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

// Streams tensors into a file without holding them all: declare all, then write in order.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void declare(const std::string& name, at::ScalarType dtype, std::vector<int64_t> shape);
  // An F8_E4M3 tensor: written from kByte codes (model/fp8.h).
  void declare_fp8(const std::string& name, std::vector<int64_t> shape);
  // Writes the next declared tensor (must match name, dtype and shape). The
  // header is written on the first call.
  void write(const std::string& name, const at::Tensor& t);
  // Raw bytes for the next declared tensor, possibly in several calls.
  void write_bytes(const std::string& name, const void* data, std::uint64_t nbytes);
  void finish();
  std::uint64_t total_bytes() const { return data_bytes_; }

 private:
  void write_header();
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> decl_;
  std::uint64_t data_bytes_ = 0;
  std::size_t next_ = 0;
  std::uint64_t written_in_current_ = 0;
  std::FILE* f_ = nullptr;
  bool header_written_ = false;
  bool finished_ = false;
};

// Writes a small map of tensors (sorted by name).
void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      std::map<std::string, std::string> metadata = {});

}  // namespace wand::model
