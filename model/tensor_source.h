// TensorSource: one interface over every checkpoint format (safetensors files,
// sharded safetensors with an index, torch .pth zip pickles).
//
//   auto src = wand::model::open_safetensors("model.safetensors");
//   for (auto& name : src->names()) {
//     const TensorInfo& ti = src->info(name);     // file, byte offset, dtype, shape
//     at::Tensor w = src->load(name, at::kBFloat16);  // read + convert, one tensor at a time
//   }
//
// info() exposes where a tensor's bytes live so the weight store can read them
// straight into a memory-tier buffer (no second copy). Errors name the file and key.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace wand::model {

struct TensorInfo {
  std::string name;
  at::ScalarType dtype = at::kFloat;  // stored dtype
  std::vector<int64_t> shape;
  std::string path;         // file holding the bytes
  std::uint64_t offset = 0;  // absolute byte offset of the first element in `path`
  std::uint64_t nbytes = 0;  // numel * element size (contiguous, little-endian)
  // Stored as fp8_e4m3fn (safetensors F8_E4M3): dtype is kByte (the raw codes) and load()
  // returns the dequantized values (model/fp8.h, Note [fp8 dequantization]).
  bool fp8 = false;

  int64_t numel() const;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual std::vector<std::string> names() const = 0;  // in file order
  virtual bool contains(const std::string& name) const = 0;
  // Throws wand::Error(kModelFormat) naming the source and the key when absent.
  virtual const TensorInfo& info(const std::string& name) const = 0;
  // Reads one tensor (CPU, contiguous) and converts it to `dtype` when given.
  virtual at::Tensor load(const std::string& name,
                          c10::optional<at::ScalarType> dtype = c10::nullopt) const = 0;
  // A short description for messages (a path).
  virtual std::string describe() const = 0;
};

// Element size and safetensors dtype names ("F32", "BF16", ...).
std::size_t dtype_size(at::ScalarType t);
std::string safetensors_dtype_name(at::ScalarType t);
at::ScalarType parse_safetensors_dtype(const std::string& s, const std::string& context);

// Reads `nbytes` at `offset` of `path` into `dst` with pread, throwing kIo
// (naming the file and offset) on error or short file.
void read_exact(const std::string& path, std::uint64_t offset, void* dst, std::uint64_t nbytes);

}  // namespace wand::model
