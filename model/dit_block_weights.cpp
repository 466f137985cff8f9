#include "model/dit_block_weights.h"

#include <functional>

#include "common/error.h"

namespace wand::model {

namespace {

// Field order == tensor_names() order. kind: 0 GEMM (gemm dtype), 1 fp32 after rounding, 2 norm (gemm dtype).
struct FieldSpec {
  const char* suffix;
  at::Tensor DitBlockWeights::*member;
  int kind;
};

const std::vector<FieldSpec>& specs() {
  using W = DitBlockWeights;
  static const std::vector<FieldSpec> s = {
      {"modulation", &W::modulation, 1},
      {"self_attn.q.weight", &W::sa_q_w, 0},      {"self_attn.q.bias", &W::sa_q_b, 0},
      {"self_attn.k.weight", &W::sa_k_w, 0},      {"self_attn.k.bias", &W::sa_k_b, 0},
      {"self_attn.v.weight", &W::sa_v_w, 0},      {"self_attn.v.bias", &W::sa_v_b, 0},
      {"self_attn.o.weight", &W::sa_o_w, 0},      {"self_attn.o.bias", &W::sa_o_b, 0},
      {"self_attn.norm_q.weight", &W::sa_norm_q, 2}, {"self_attn.norm_k.weight", &W::sa_norm_k, 2},
      {"cross_attn.q.weight", &W::ca_q_w, 0},     {"cross_attn.q.bias", &W::ca_q_b, 0},
      {"cross_attn.k.weight", &W::ca_k_w, 0},     {"cross_attn.k.bias", &W::ca_k_b, 0},
      {"cross_attn.v.weight", &W::ca_v_w, 0},     {"cross_attn.v.bias", &W::ca_v_b, 0},
      {"cross_attn.o.weight", &W::ca_o_w, 0},     {"cross_attn.o.bias", &W::ca_o_b, 0},
      {"cross_attn.norm_q.weight", &W::ca_norm_q, 2}, {"cross_attn.norm_k.weight", &W::ca_norm_k, 2},
      {"norm3.weight", &W::norm3_w, 1},           {"norm3.bias", &W::norm3_b, 1},
      {"ffn.0.weight", &W::ffn0_w, 0},            {"ffn.0.bias", &W::ffn0_b, 0},
      {"ffn.2.weight", &W::ffn2_w, 0},            {"ffn.2.bias", &W::ffn2_b, 0},
  };
  return s;
}

DitBlockWeights build(const std::function<at::Tensor(const std::string&)>& get, int64_t i, RunDtype run,
                      at::Device device) {
  DitBlockWeights w;
  const at::ScalarType g = gemm_dtype(run);
  const std::string prefix = "blocks." + std::to_string(i) + ".";
  for (const auto& s : specs()) {
    at::Tensor t = get(prefix + s.suffix);
    at::Tensor r;
    if (s.kind == 1) {
      r = t.to(g).to(at::kFloat);  // rounded to the run dtype, used in fp32
    } else {
      r = t.to(g);
    }
    w.*(s.member) = r.to(device).contiguous();
  }
  return w;
}

}  // namespace

RunDtype parse_run_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return RunDtype::kFloat32;
  if (s == "bf16" || s == "bfloat16") return RunDtype::kBFloat16;
  if (s == "fp16" || s == "float16") return RunDtype::kFloat16;
  throw Error(ErrorCode::kBadRequest, "unknown run dtype '" + s + "' (fp32, bf16, fp16)");
}

const char* run_dtype_name(RunDtype d) {
  switch (d) {
    case RunDtype::kFloat32: return "fp32";
    case RunDtype::kBFloat16: return "bf16";
    case RunDtype::kFloat16: return "fp16";
  }
  return "?";
}

at::ScalarType gemm_dtype(RunDtype d) {
  switch (d) {
    case RunDtype::kFloat32: return at::kFloat;
    case RunDtype::kBFloat16: return at::kBFloat16;
    case RunDtype::kFloat16: return at::kHalf;
  }
  return at::kFloat;
}

std::vector<std::string> DitBlockWeights::tensor_names(int64_t i) {
  std::vector<std::string> v;
  const std::string prefix = "blocks." + std::to_string(i) + ".";
  for (const auto& s : specs()) v.push_back(prefix + s.suffix);
  return v;
}

DitBlockWeights DitBlockWeights::from(const TensorSource& src, int64_t i, RunDtype run, at::Device device) {
  return build([&](const std::string& n) { return src.load(n); }, i, run, device);
}

DitBlockWeights DitBlockWeights::from_map(const std::map<std::string, at::Tensor>& by_name, int64_t i, RunDtype run,
                                          at::Device device) {
  return build(
      [&](const std::string& n) {
        auto it = by_name.find(n);
        if (it == by_name.end()) throw Error(ErrorCode::kModelFormat, "block weights: missing key '" + n + "'");
        return it->second;
      },
      i, run, device);
}

std::vector<at::Tensor*> DitBlockWeights::fields() {
  std::vector<at::Tensor*> v;
  for (const auto& s : specs()) v.push_back(&(this->*(s.member)));
  return v;
}

std::vector<const at::Tensor*> DitBlockWeights::fields() const {
  std::vector<const at::Tensor*> v;
  for (const auto& s : specs()) v.push_back(&(this->*(s.member)));
  return v;
}

std::uint64_t DitBlockWeights::nbytes() const {
  std::uint64_t n = 0;
  for (const at::Tensor* t : fields()) {
    if (t->defined()) n += static_cast<std::uint64_t>(t->numel()) * t->element_size();
  }
  return n;
}

}  // namespace wand::model
