// Named tensors <-> one byte buffer, for job checkpoints (GenState blobs).
//
//   std::vector<uint8_t> b = tensors_to_bytes({{"latent", x}, {"step", s}});
//   std::map<std::string, at::Tensor> m = tensors_from_bytes(b, "latent blob");
//
// Format: the safetensors layout in memory (u64 little-endian header length n,
// n bytes of JSON {name: {dtype, shape, data_offsets}}, then the raw
// little-endian bytes, C-contiguous), so a blob written to disk is a valid
// .safetensors file. 0-dim tensors have shape []. Tensors are copied to the CPU.
// Bad bytes (truncated, wrong offsets, unknown dtype) throw
// wand::Error(kModelFormat) naming `what` and the entry. Free functions, any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace wand::model {

std::vector<std::uint8_t> tensors_to_bytes(const std::map<std::string, at::Tensor>& tensors);
std::map<std::string, at::Tensor> tensors_from_bytes(const std::vector<std::uint8_t>& bytes,
                                                     const std::string& what);

}  // namespace wand::model
