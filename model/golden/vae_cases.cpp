// Golden handler for the vae21 / vae22 cases: loads the case's .pth (widths
// inferred from shapes, checked against case.json config), encodes `video` and
// decodes `z` with the official chunked causal schedule in fp32 on the CPU.
#include <string>

#include "common/error.h"
#include "model/golden/golden.h"
#include "model/pth.h"
#include "model/vae.h"

namespace wand::model::golden {

Outputs run_vae(const Case& c) {
  const std::string kind = c.spec.value("case", std::string());
  const std::string file = c.spec.at("checkpoint").at("file").get<std::string>();
  PthFile src((c.dir / file).string());
  Vae vae(src, VaeOptions{});
  const VaeConfig& cfg = vae.config();
  const VaeVersion want = kind == "vae21" ? VaeVersion::kWan21 : VaeVersion::kWan22;
  if (cfg.version != want) {
    throw Error(ErrorCode::kModelFormat, c.dir.string() + ": " + file + " holds " + cfg.name() +
                                             ", case " + kind + " expects the other VAE");
  }
  const auto& conf = c.spec.at("config");
  if (conf.contains("dim") && conf.at("dim").get<int64_t>() != cfg.dim) {
    throw Error(ErrorCode::kModelFormat, c.dir.string() + ": case.json config.dim " +
                                             conf.at("dim").dump() + " but the checkpoint has " +
                                             std::to_string(cfg.dim));
  }
  if (conf.contains("dec_dim") && conf.at("dec_dim").get<int64_t>() != cfg.dec_dim) {
    throw Error(ErrorCode::kModelFormat, c.dir.string() + ": case.json config.dec_dim " +
                                             conf.at("dec_dim").dump() + " but the checkpoint has " +
                                             std::to_string(cfg.dec_dim));
  }
  auto input = [&](const char* name) {
    auto it = c.inputs.find(name);
    if (it == c.inputs.end()) {
      throw Error(ErrorCode::kModelFormat, c.dir.string() + ": inputs.safetensors lacks " + name);
    }
    return it->second.to(at::kFloat);
  };
  const at::Tensor video = input("video");
  const at::Tensor z = input("z");

  Outputs out;
  at::Tensor mu = vae.encode_mu(video);
  out["encoded_unnormalized_mu"] = mu;
  out["encoded"] = ((mu - vae.latents_mean().view({-1, 1, 1, 1})) *
                    vae.latents_inv_std().view({-1, 1, 1, 1}))
                       .contiguous();
  VaeDecodeOptions raw;
  raw.clamp = false;
  at::Tensor decoded = vae.decode(z, raw);
  out["decoded_unclamped"] = decoded;
  out["decoded"] = decoded.clamp(-1.0, 1.0);
  // The wrapper constants as float64 (the reference materialises them in float64).
  const auto& mean = cfg.latents_mean();
  const auto& stdv = cfg.latents_std();
  at::Tensor m = at::empty({static_cast<int64_t>(mean.size())}, at::kDouble);
  at::Tensor inv = at::empty({static_cast<int64_t>(stdv.size())}, at::kDouble);
  for (size_t i = 0; i < mean.size(); ++i) {
    m[static_cast<int64_t>(i)] = mean[i];
    inv[static_cast<int64_t>(i)] = 1.0 / stdv[i];
  }
  out["latents_mean"] = m;
  out["latents_inv_std"] = inv;
  return out;
}

}  // namespace wand::model::golden
