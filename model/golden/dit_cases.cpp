// Golden handlers of the DiT family: rope, dit_t2v / dit_i2v / dit_ti2v,
// sched_unipc / sched_dpmpp, moe_boundary. Computed in float32 (the DiT) or in
// float64 with float32 coefficients (the samplers, as the official code does).
#include <cmath>

#include "common/error.h"
#include "common/log.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/golden/golden.h"
#include "model/pth.h"
#include "model/rope.h"
#include "model/sampler.h"
#include "model/sampler_schedule.h"
#include "model/vae.h"

namespace wand::model::golden {

namespace {

const at::Tensor& input(const Case& c, const std::string& name) {
  auto it = c.inputs.find(name);
  if (it == c.inputs.end()) {
    throw Error(ErrorCode::kModelFormat, (c.dir / "inputs.safetensors").string() + ": missing input '" + name + "'");
  }
  return it->second;
}

bool listed(const Case& c, const std::string& name) {
  return c.spec.contains("outputs") && c.spec["outputs"].contains(name);
}

}  // namespace

Outputs run_rope(const Case& c) {
  const auto& cfg = c.spec.at("config");
  const int64_t head_dim = cfg.at("head_dim").get<int64_t>();
  const int64_t table_len = cfg.value("table_len", kRopeTableLen);
  const double theta = cfg.value("theta", kRopeTheta);
  at::Tensor freqs = rope_freqs(head_dim, table_len, theta);  // [len, d/2, 2] float64
  at::Tensor x = input(c, "x");                                // [B, L, N, d]
  at::Tensor grids = input(c, "grid_sizes").to(at::kLong);     // [B, 3]
  std::vector<at::Tensor> outs;
  for (int64_t b = 0; b < x.size(0); ++b) {
    at::Tensor tab = rope_token_table(freqs, grids[b][0].item<int64_t>(), grids[b][1].item<int64_t>(),
                                      grids[b][2].item<int64_t>(), x.size(1), at::kDouble);
    outs.push_back(rope_apply(x.select(0, b), tab, at::kDouble));
  }
  Outputs out;
  out["out"] = at::stack(outs, 0);
  out["freqs_first128"] = freqs.slice(0, 0, 128).contiguous();
  return out;
}

Outputs run_dit(const Case& c) {
  const auto& cfg = c.spec.at("config");
  const std::string sub = cfg.value("checkpoint_subdir", std::string("."));
  CheckpointDir ck(c.dir / sub);
  WanDit dit = WanDit::load(ck, RunDtype::kFloat32, at::kCPU);
  const at::Tensor x = input(c, "x").to(at::kFloat);
  const at::Tensor t = input(c, "t");
  const at::Tensor context = input(c, "context").to(at::kFloat);
  const int64_t seq_len = input(c, "seq_len").item<int64_t>();
  c10::optional<at::Tensor> y;
  if (c.inputs.count("y")) y = input(c, "y").to(at::kFloat);

  Outputs out;
  auto f64 = [](const at::Tensor& v) { return v.to(at::kDouble).contiguous(); };
  DitInputs in = dit.embed(x, t, context, seq_len, y);
  const int64_t D = ck.config().dim;
  out["patch_embed_out"] = f64(in.tokens.select(0, 0)
                                   .slice(0, 0, in.num_tokens)
                                   .transpose(0, 1)
                                   .reshape({1, D, in.grid_f, in.grid_h, in.grid_w}));
  out["context_emb"] = f64(in.context);
  // Time rows: token 0, and for per-token t the first token of latent frame 1.
  std::vector<int64_t> tok_rows = {0};
  if (listed(c, "e") && c.spec["outputs"]["e"]["shape"][1].get<int64_t>() == 2) {
    tok_rows.push_back(in.grid_h * in.grid_w);
  }
  at::Tensor ridx = at::tensor(tok_rows, at::TensorOptions().dtype(at::kLong));
  if (in.row_of_token.defined()) ridx = in.row_of_token.index_select(0, ridx);
  else ridx = at::zeros_like(ridx);
  out["sin_emb"] = f64(in.sin_emb.index_select(0, ridx).unsqueeze(0));
  out["e"] = f64(in.e.index_select(0, ridx).unsqueeze(0));
  out["e0"] = f64(in.e0.index_select(0, ridx).unsqueeze(0));
  const int64_t max_grid = std::max({in.grid_f, in.grid_h, in.grid_w});
  out["freqs_rows"] = f64(dit.freqs().slice(0, 0, max_grid));

  at::Tensor h = in.tokens;
  for (int64_t i = 0; i < dit.num_layers(); ++i) {
    h = dit.block(i, h, in);
    if (i == 0) out["block0_out"] = f64(h);
  }
  at::Tensor ho = dit.head_tokens(h, in);
  out["head_out"] = f64(ho);
  out["pred"] = f64(dit.unpatchify(ho, in));
  if (listed(c, "pred_padded_seq_len")) {
    const int64_t padded = cfg.at("padded_seq_len").get<int64_t>();
    out["pred_padded_seq_len"] = f64(dit.forward(x, t, context, padded, y));
  }
  // i2v conditioning pieces that need no VAE (WanI2V.generate arithmetic).
  if (listed(c, "y_build_msk")) {
    const int64_t frames = cfg.at("frame_num").get<int64_t>();
    const int64_t lh = cfg.at("lat_h").get<int64_t>(), lw = cfg.at("lat_w").get<int64_t>();
    at::Tensor msk = at::ones({1, frames, lh, lw}, at::kDouble);
    msk.slice(1, 1).zero_();
    msk = at::cat({msk.slice(1, 0, 1).repeat_interleave(4, 1), msk.slice(1, 1)}, 1);
    msk = msk.view({1, msk.size(1) / 4, 4, lh, lw}).transpose(1, 2).select(0, 0);
    out["y_build_msk"] = msk.contiguous();
  }
  if (listed(c, "y_build_image_resized")) {
    // TF.to_tensor (u8 / 255), sub_(0.5).div_(0.5), bicubic to (h, w), align_corners False, no clamp.
    at::Tensor img = input(c, "image_uint8").to(at::kFloat).div(255.0).sub_(0.5).div_(0.5);
    const int64_t h = cfg.at("h").get<int64_t>(), w = cfg.at("w").get<int64_t>();
    at::Tensor r = at::upsample_bicubic2d(img.unsqueeze(0), {h, w}, /*align_corners=*/false);
    out["y_build_image_resized"] = f64(r.select(0, 0));
  }
  // VAE-encoded conditioning (the VAE family's encoder, fp32 on the CPU).
  if (listed(c, "y_build_vae_latent")) {
    const auto& b = cfg.at("y_builder");
    PthFile pth((c.dir / b.at("vae_case_dir").get<std::string>() / "Wan2.1_VAE.pth").string());
    Vae vae(pth);
    const int64_t frames = cfg.at("frame_num").get<int64_t>();
    at::Tensor img = out.at("y_build_image_resized").to(at::kFloat);  // [3, h, w]
    at::Tensor video = at::cat({img.unsqueeze(1), at::zeros({3, frames - 1, img.size(1), img.size(2)})}, 1);
    out["y_build_vae_latent"] = f64(vae.encode(video));
  }
  if (listed(c, "z_build_z")) {
    const auto& b = cfg.at("z_builder");
    PthFile pth((c.dir / b.at("vae_case_dir").get<std::string>() / "Wan2.2_VAE.pth").string());
    Vae vae(pth);
    at::Tensor img = input(c, "image_uint8").to(at::kFloat).div(255.0).sub_(0.5).div_(0.5);  // [3, oh, ow]
    out["z_build_z"] = f64(vae.encode(img.unsqueeze(1)));
  }
  return out;
}

namespace {

// The case's deterministic stand-in for the CFG-combined model output.
at::Tensor model_fn(const at::Tensor& x, int64_t t, const at::Tensor& x0) {
  const double cc = 0.3 * std::sin(static_cast<double>(t) / 1000.0);
  return (0.7 * x - cc * x0) + 0.1 * at::tanh(x);
}

}  // namespace

Outputs run_scheduler(const Case& c) {
  const auto& cfg = c.spec.at("config");
  const SolverKind kind = parse_solver(cfg.at("solver").get<std::string>());
  const double shift = cfg.at("shift").get<double>();
  const at::Tensor noise = input(c, "noise").to(at::kDouble);
  const at::Tensor x0 = input(c, "x0_fixed").to(at::kDouble);
  Outputs out;
  for (const auto& n : cfg.at("steps")) {
    const int steps = n.get<int>();
    const std::string p = "steps" + std::to_string(steps) + "_";
    FlowSampler s(kind, steps, shift);
    std::vector<at::Tensor> latents = {noise}, mouts;
    std::vector<int64_t> orders;
    at::Tensor x = noise;
    while (!s.done()) {
      const int64_t t = s.timestep();
      at::Tensor v = model_fn(x, t, x0);
      mouts.push_back(v);
      x = s.step(v, x);
      orders.push_back(s.last_order());
      latents.push_back(x);
    }
    out[p + "timesteps"] = at::tensor(s.schedule().timesteps, at::TensorOptions().dtype(at::kLong));
    out[p + "sigmas"] = at::tensor(s.schedule().sigmas, at::TensorOptions().dtype(at::kFloat));
    out[p + "latents"] = at::stack(latents, 0);
    out[p + "model_out"] = at::stack(mouts, 0);
    if (listed(c, p + "order")) out[p + "order"] = at::tensor(orders, at::TensorOptions().dtype(at::kLong));
  }
  return out;
}

Outputs run_moe_boundary(const Case& c) {
  Outputs out;
  const auto& tasks = c.spec.at("config").at("tasks");
  for (auto it = tasks.begin(); it != tasks.end(); ++it) {
    std::string task = it.key();
    for (char& ch : task) if (ch == '-') ch = '_';
    const auto& tc = it.value();
    const double boundary = tc.at("boundary").get<double>();
    const int steps = tc.at("sample_steps").get<int>();
    const double shift = tc.at("sample_shift").get<double>();
    const double g_low = tc.at("sample_guide_scale")[0].get<double>();
    const double g_high = tc.at("sample_guide_scale")[1].get<double>();
    for (SolverKind kind : {SolverKind::kUniPC, SolverKind::kDpmPP}) {
      const std::string p = task + (kind == SolverKind::kUniPC ? "_unipc_" : "_dpmpp_");
      SamplerSchedule s = make_schedule(kind, steps, shift);
      std::vector<uint8_t> high;
      std::vector<double> g;
      for (int64_t t : s.timesteps) {
        ExpertChoice e = choose_expert(t, boundary, g_low, g_high);
        high.push_back(e.use_high_noise ? 1 : 0);
        g.push_back(e.guide_scale);
      }
      out[p + "timesteps"] = at::tensor(s.timesteps, at::TensorOptions().dtype(at::kLong));
      out[p + "use_high_noise_expert"] = at::tensor(high, at::TensorOptions().dtype(at::kByte)).to(at::kBool);
      out[p + "guide_scale"] = at::tensor(g, at::TensorOptions().dtype(at::kDouble));
    }
  }
  return out;
}

}  // namespace wand::model::golden
