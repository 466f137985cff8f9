#include "model/tensor_bytes.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/tensor_source.h"

namespace wand::model {

std::vector<std::uint8_t> tensors_to_bytes(const std::map<std::string, at::Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<at::Tensor> cpu;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    WAND_ASSERT(t.defined(), "tensors_to_bytes: undefined tensor '" + name + "'");
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const std::uint64_t nbytes = static_cast<std::uint64_t>(c.numel()) * dtype_size(c.scalar_type());
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    cpu.push_back(c);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::vector<std::uint8_t> out(8 + h.size() + offset);
  const std::uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, h.data(), h.size());
  std::uint8_t* data = out.data() + 8 + h.size();
  for (const at::Tensor& c : cpu) {
    const std::size_t nbytes = static_cast<std::size_t>(c.numel()) * dtype_size(c.scalar_type());
    if (nbytes) std::memcpy(data, c.data_ptr(), nbytes);
    data += nbytes;
  }
  return out;
}

std::map<std::string, at::Tensor> tensors_from_bytes(const std::vector<std::uint8_t>& bytes,
                                                     const std::string& what) {
  auto bad = [&](const std::string& msg) { return Error(ErrorCode::kModelFormat, what + ": " + msg); };
  if (bytes.size() < 8) throw bad("truncated (" + std::to_string(bytes.size()) + " bytes, no header length)");
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(bytes[i]) << (8 * i);
  if (n > bytes.size() - 8) throw bad("header length " + std::to_string(n) + " exceeds the blob");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const std::exception& e) {
    throw bad(std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) throw bad("header is not a JSON object");
  const std::uint64_t data_start = 8 + n;
  const std::uint64_t data_bytes = bytes.size() - data_start;
  std::map<std::string, at::Tensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
      throw bad("entry '" + it.key() + "' lacks dtype, shape or data_offsets");
    }
    const at::ScalarType dt = parse_safetensors_dtype(e["dtype"].get<std::string>(), what + " entry '" + it.key() + "'");
    std::vector<int64_t> shape = e["shape"].get<std::vector<int64_t>>();
    std::uint64_t numel = 1;
    for (int64_t s : shape) {
      if (s < 0) throw bad("entry '" + it.key() + "' has a negative dimension");
      numel *= static_cast<std::uint64_t>(s);
    }
    const auto off = e["data_offsets"].get<std::vector<std::uint64_t>>();
    if (off.size() != 2 || off[0] > off[1] || off[1] > data_bytes || off[1] - off[0] != numel * dtype_size(dt)) {
      throw bad("entry '" + it.key() + "' has data_offsets outside the blob or not matching its shape");
    }
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
    if (numel) std::memcpy(t.data_ptr(), bytes.data() + data_start + off[0], off[1] - off[0]);
    out.emplace(it.key(), t);
  }
  return out;
}

}  // namespace wand::model
