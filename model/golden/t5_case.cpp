// Golden handler for the umT5 case: T5Encoder in float32 on CPU (or in the run
// dtype / device given by WAND_GOLDEN_T5_RUN=bf16 / WAND_GOLDEN_DEVICE=cuda, for
// the bf16 parity check), outputs in float64 / int64 as case.json lists them.
#include <cstdlib>

#include "common/error.h"
#include "model/golden/golden.h"
#include "model/t5_encoder.h"

namespace wand::model::golden {

Outputs run_t5(const Case& c) {
  const std::string file = c.spec.at("checkpoint").value("file", std::string("models_t5_umt5-xxl-enc-bf16.pth"));
  RunDtype run = RunDtype::kFloat32;
  if (const char* r = std::getenv("WAND_GOLDEN_T5_RUN")) run = parse_run_dtype(r);
  at::Device device = at::kCPU;
  if (const char* d = std::getenv("WAND_GOLDEN_DEVICE")) device = at::Device(std::string(d));
  for (const char* in : {"ids", "mask"}) {
    if (!c.inputs.count(in)) throw Error(ErrorCode::kModelFormat, c.dir.string() + ": t5 case input '" + in + "' missing");
  }
  const at::Tensor ids = c.inputs.at("ids").to(device);
  const at::Tensor mask = c.inputs.at("mask").to(device);
  T5Encoder enc = T5Encoder::load((c.dir / file).string(), run, device);
  const int64_t L = ids.size(1);

  Outputs out;
  at::Tensor x0 = enc.block(0, enc.embed(ids), mask, enc.block_weights(0));
  out["block0_out"] = x0.to(at::kCPU, at::kDouble);
  out["rel_buckets"] = T5Encoder::relative_buckets(L, L, enc.config().num_buckets, enc.config().max_dist);
  out["pos_bias_block0"] = enc.position_bias(enc.block_weights(0), L, L).to(at::kCPU, at::kDouble);
  out["encoder_out"] = enc.forward(ids, mask).to(at::kCPU, at::kDouble);
  out["seq_lens"] = mask.gt(0).sum(1).to(at::kCPU, at::kLong);
  const auto ctx = enc.encode(ids, mask);
  for (std::size_t b = 0; b < ctx.size(); ++b) out["context_" + std::to_string(b)] = ctx[b].to(at::kCPU, at::kDouble);
  return out;
}

}  // namespace wand::model::golden
