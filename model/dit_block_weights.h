// DitBlockWeights: the 27 tensors of one DiT block, prepared for a run dtype.
//
//   auto names = DitBlockWeights::tensor_names(3);   // "blocks.3.self_attn.q.weight", ...
//   DitBlockWeights w = DitBlockWeights::from(ckpt, 3, RunDtype::kBFloat16, at::kCUDA);
//   x = dit.block(3, x, inputs, w);                  // the DiT never owns w
//
// GEMM weights and biases are held in the GEMM dtype (bf16 / fp16 / fp32).
// Parameters used outside GEMMs are rounded to the run dtype first (the
// official --convert_model_dtype / FSDP numerics) and held as: modulation and
// norm3 in fp32 (they are added to / applied on the fp32 stream), the qk-RMSNorm
// weights in the GEMM dtype (their product follows the weight's dtype).
// WanDit::block also accepts tensors in other dtypes (e.g. raw views of a
// memory-tier slot) and converts them per call.
// A plain value (handles to tensors); any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model/tensor_source.h"

namespace wand::model {

// How the DiT computes (chosen at load, whatever the stored dtype).
enum class RunDtype { kFloat32, kBFloat16, kFloat16 };
RunDtype parse_run_dtype(const std::string& s);  // "fp32" | "bf16" | "fp16"
const char* run_dtype_name(RunDtype d);
at::ScalarType gemm_dtype(RunDtype d);

struct DitBlockWeights {
  at::Tensor modulation;                       // [1, 6, D]
  at::Tensor sa_q_w, sa_q_b, sa_k_w, sa_k_b;   // [D, D], [D]
  at::Tensor sa_v_w, sa_v_b, sa_o_w, sa_o_b;   // [D, D], [D]
  at::Tensor sa_norm_q, sa_norm_k;             // [D]
  at::Tensor ca_q_w, ca_q_b, ca_k_w, ca_k_b;   // [D, D], [D]
  at::Tensor ca_v_w, ca_v_b, ca_o_w, ca_o_b;   // [D, D], [D]
  at::Tensor ca_norm_q, ca_norm_k;             // [D]
  at::Tensor norm3_w, norm3_b;                 // [D]
  at::Tensor ffn0_w, ffn0_b;                   // [F, D], [F]
  at::Tensor ffn2_w, ffn2_b;                   // [D, F], [D]

  // The state-dict keys of block i, in the order of the fields above.
  static std::vector<std::string> tensor_names(int64_t i);
  // Reads block i from a checkpoint and prepares it for `run` on `device`.
  static DitBlockWeights from(const TensorSource& src, int64_t i, RunDtype run, at::Device device);
  // Same from tensors keyed by full state-dict name.
  static DitBlockWeights from_map(const std::map<std::string, at::Tensor>& by_name, int64_t i, RunDtype run,
                                  at::Device device);
  // The fields in tensor_names() order (for iteration).
  std::vector<at::Tensor*> fields();
  std::vector<const at::Tensor*> fields() const;
  std::uint64_t nbytes() const;
};

}  // namespace wand::model
