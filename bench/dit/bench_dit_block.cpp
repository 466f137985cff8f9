// bench_dit_block: one Wan2.2 A14B DiT block (t2v-A14B geometry: dim 5120,
// ffn 13824, 40 heads) in bf16 on CUDA through WanDit::block, at 32,760 and
// 75,600 video tokens with 512 text tokens. Warm-up, then the median of N
// timed runs (torch::cuda::synchronize around each). Prints ms and TFLOP/s.
//
//   bench_dit_block [--tokens 32760,75600] [--iters 10] [--warmup 3]
//                   [--model-dir DIR]       read block 0 from a wand-make-model dir (expert dir)
//                   [--weights-out FILE]    write the block weights used (bf16 safetensors) for pytorch_block.py
//                   [--chunk N] [--json FILE]
//                   [--fused 0,1]           block paths to time: 0 unfused, 1 fused kernels
//                                           (Note [Fused DiT block]; default both, unfused first)
//                   [--attn auto,cudnn,flash,efficient]  SDPA kernel families to time the block
//                                           with (compat::set_sdpa_backend; default auto), and
//                                           the self-attention alone ([1, heads, S, 128] bf16,
//                                           4 S^2 D FLOP) under each, so the attention share of
//                                           the block is measured, not modelled
//                   [--attn-probe 0]        skip that self-attention-alone timing (profiling
//                                           the block alone: bench/dit/profile.sh)
// Without CUDA it prints "skip" and exits 0. Each size also prints the rel. L2
// between the fused and unfused outputs of the same input.
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/torch_compat.h"
#include "model/checkpoint.h"
#include "model/cuda/dit_fused.h"
#include "model/dit.h"
#include "model/make_model/make_model.h"
#include "model/safetensors.h"

using namespace wand::model;

namespace {

// In-memory tensors as a TensorSource (random non-block weights of the full geometry).
class MapSource : public TensorSource {
 public:
  void put(const std::string& n, at::Tensor t) {
    TensorInfo ti;
    ti.name = n;
    ti.dtype = t.scalar_type();
    ti.shape = t.sizes().vec();
    ti.path = "<memory>";
    ti.nbytes = t.numel() * t.element_size();
    info_[n] = ti;
    t_[n] = std::move(t);
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> v;
    for (auto& [k, x] : t_) v.push_back(k);
    return v;
  }
  bool contains(const std::string& n) const override { return t_.count(n) != 0; }
  const TensorInfo& info(const std::string& n) const override {
    auto it = info_.find(n);
    if (it == info_.end()) throw wand::Error(wand::ErrorCode::kModelFormat, "<memory>: no key '" + n + "'");
    return it->second;
  }
  at::Tensor load(const std::string& n, c10::optional<at::ScalarType> d) const override {
    at::Tensor t = t_.at(n);
    return d ? t.to(*d) : t;
  }
  std::string describe() const override { return "<memory>"; }

 private:
  std::map<std::string, at::Tensor> t_;
  std::map<std::string, TensorInfo> info_;
};

double block_flops(int64_t S, int64_t Lt, int64_t D, int64_t F) {
  const double s = S, l = Lt, d = D, f = F;
  return 2 * s * d * d * 4        // self q, k, v, o
         + 2 * s * d * d * 2      // cross q, o
         + 2 * l * d * d * 2      // cross k, v (text)
         + 2 * s * d * f * 2      // FFN
         + 4 * s * s * d          // self attention QK^T and PV
         + 4 * s * l * d;         // cross attention
}

// Latent (F, H, W) with F * H/2 * W/2 == tokens for the two standard sizes.
std::vector<int64_t> latent_for(int64_t tokens) {
  if (tokens == 32760) return {21, 60, 104};
  if (tokens == 75600) return {21, 90, 160};
  // Fallback: one frame row of 2 x (2 * tokens / 2) patches.
  return {1, 2, 2 * tokens};
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes = {32760, 75600};
  int iters = 10, warmup = 3;
  int64_t chunk = 0;
  std::string model_dir, weights_out, json_out;
  std::vector<int> modes = {0, 1};
  std::vector<std::string> attns = {"auto"};
  bool attn_probe = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--tokens") {
      sizes.clear();
      std::stringstream ss(val());
      for (std::string x; std::getline(ss, x, ',');) sizes.push_back(std::stoll(x));
    } else if (a == "--iters") iters = std::stoi(val());
    else if (a == "--warmup") warmup = std::stoi(val());
    else if (a == "--model-dir") model_dir = val();
    else if (a == "--weights-out") weights_out = val();
    else if (a == "--chunk") chunk = std::stoll(val());
    else if (a == "--json") json_out = val();
    else if (a == "--attn-probe") attn_probe = std::stoi(val()) != 0;
    else if (a == "--attn") {
      attns.clear();
      std::stringstream ss(val());
      for (std::string x; std::getline(ss, x, ',');) attns.push_back(x);
    }
    else if (a == "--fused") {
      modes.clear();
      std::stringstream ss(val());
      for (std::string x; std::getline(ss, x, ',');) modes.push_back(std::stoi(x) != 0 ? 1 : 0);
    }
    else {
      std::fprintf(stderr, "bench_dit_block: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (!torch::cuda::is_available()) {
    std::printf("bench_dit_block: skip (no CUDA device or CPU-only LibTorch)\n");
    return 0;
  }
  try {
    at::globalContext().setAllowTF32CuBLAS(false);
    const at::Device dev(at::kCUDA, 0);
    const RunDtype run = RunDtype::kBFloat16;
    WanConfig cfg = WanConfig::from_preset("t2v-A14B");
    std::unique_ptr<TensorSource> src;
    if (!model_dir.empty()) {
      auto ck = std::make_unique<CheckpointDir>(model_dir);
      cfg = ck->config();
      src = std::move(ck);
    } else {
      auto m = std::make_unique<MapSource>();
      for (auto& [n, s] : cfg.non_block_tensors()) m->put(n, make::random_dit_tensor(n, s, cfg.dim, 1));
      for (auto& [n, s] : cfg.block_tensors(0)) m->put(n, make::random_dit_tensor(n, s, cfg.dim, 1).to(at::kBFloat16));
      src = std::move(m);
    }
    WanDit dit = WanDit::load(*src, cfg, run, dev, /*load_blocks=*/false);
    dit.set_chunk_tokens(chunk);
    DitBlockWeights w = DitBlockWeights::from(*src, 0, run, dev);
    if (!weights_out.empty()) {
      std::map<std::string, at::Tensor> m;
      for (const auto& n : DitBlockWeights::tensor_names(0)) m[n.substr(std::string("blocks.0.").size())] = src->load(n, at::kBFloat16);
      save_safetensors(weights_out, m, {{"format", "pt"}});
      std::printf("bench_dit_block: wrote block weights to %s\n", weights_out.c_str());
    }
    if (!wand::model::fused::available()) {
      std::printf("bench_dit_block: fused kernels not built; timing the unfused path only\n");
      modes = {0};
    }
    std::printf("| tokens | text | attn | kernel | fused | ms (median of %d) | TFLOP/s |\n|---|---|---|---|---|---|---|\n", iters);
    std::ostringstream js;
    js << "{\"device\": \"cuda\", \"results\": [";
    bool first = true;
    for (size_t si = 0; si < sizes.size(); ++si) {
      const int64_t S = sizes[si];
      auto lat = latent_for(S);
      at::manual_seed(0);
      at::Tensor x = at::randn({cfg.out_dim, lat[0], lat[1], lat[2]}).to(dev);
      c10::optional<at::Tensor> y;
      if (cfg.model_type == "i2v") y = at::randn({20, lat[0], lat[1], lat[2]}).to(dev);
      at::Tensor ctx = (at::randn({512, cfg.text_dim}) * 0.5).to(dev);
      DitInputs in = dit.embed(x, at::full({1}, 900, at::kLong), ctx, S, y);
      // Time a block after block 0 (fp32 residual stream input, like blocks 1..39).
      at::Tensor h = at::randn({1, S, cfg.dim}, at::TensorOptions().dtype(at::kFloat).device(dev));
      // The parts of a forward outside the blocks (once per forward): embed (patch / time / text
      // embeddings, the RoPE table) and head (+ unpatchify).
      for (const char* part : {"embed", "head"}) {
        std::vector<double> pms;
        for (int it = 0; it < warmup + iters; ++it) {
          torch::cuda::synchronize();
          auto t0 = std::chrono::steady_clock::now();
          if (part[0] == 'e') {
            DitInputs e = dit.embed(x, at::full({1}, 900, at::kLong), ctx, S, y);
          } else {
            at::Tensor o = dit.head(h, in);
          }
          torch::cuda::synchronize();
          auto t1 = std::chrono::steady_clock::now();
          if (it >= warmup) pms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
        std::sort(pms.begin(), pms.end());
        const double pmed = pms[pms.size() / 2];
        std::printf("| %lld | %s (once per forward) | - | - | - | %.1f | - |\n", static_cast<long long>(S), part, pmed);
        js << (first ? "" : ", ") << "{\"tokens\": " << S << ", \"part\": \"" << part << "\", \"ms\": " << pmed << "}";
        first = false;
      }
      std::map<int, at::Tensor> outs;
      for (const std::string& attn : attns) {
      if (!wand::compat::set_sdpa_backend(attn)) {
        std::printf("bench_dit_block: SDPA backend '%s' not available here, skipped\n", attn.c_str());
        continue;
      }
      const int64_t heads = cfg.num_heads, hd = cfg.dim / cfg.num_heads;
      const auto qo = at::TensorOptions().dtype(at::kBFloat16).device(dev);
      // Self-attention alone, in the layout the block passes ([1, S, N, d] viewed as [1, N, S, d]).
      at::Tensor q = at::randn({1, S, heads, hd}, qo).transpose(1, 2);
      at::Tensor k = at::randn({1, S, heads, hd}, qo).transpose(1, 2);
      at::Tensor v = at::randn({1, S, heads, hd}, qo).transpose(1, 2);
      const std::string kernel = wand::compat::sdpa_backend_for(q, k, v);
      if (attn_probe) {
        std::vector<double> ams;
        for (int it = 0; it < warmup + iters; ++it) {
          torch::cuda::synchronize();
          auto t0 = std::chrono::steady_clock::now();
          at::Tensor o = wand::compat::sdpa(q, k, v);
          torch::cuda::synchronize();
          auto t1 = std::chrono::steady_clock::now();
          if (it >= warmup) ams.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
        std::sort(ams.begin(), ams.end());
        const double amed = ams[ams.size() / 2];
        const double atf = 4.0 * static_cast<double>(S) * S * cfg.dim / (amed * 1e-3) / 1e12;
        std::printf("| %lld | self-attention only | %s | %s | - | %.1f | %.0f |\n", static_cast<long long>(S),
                    attn.c_str(), kernel.c_str(), amed, atf);
        js << (first ? "" : ", ") << "{\"tokens\": " << S << ", \"attn\": \"" << attn << "\", \"kernel\": \""
           << kernel << "\", \"part\": \"self_attention\", \"ms\": " << amed << ", \"tflops\": " << atf << "}";
        first = false;
      }
      for (int mode : modes) {
        wand::model::fused::set_enabled(mode == 1);
        std::vector<double> ms;
        for (int it = 0; it < warmup + iters; ++it) {
          torch::cuda::synchronize();
          auto t0 = std::chrono::steady_clock::now();
          at::Tensor out = dit.block(1, h, in, w);
          torch::cuda::synchronize();
          auto t1 = std::chrono::steady_clock::now();
          if (it >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
          if (it + 1 == warmup + iters) outs[mode] = out;
        }
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2];
        const double tflops = block_flops(S, 512, cfg.dim, cfg.ffn_dim) / (med * 1e-3) / 1e12;
        std::printf("| %lld | 512 | %s | %s | %d | %.1f | %.0f |\n", static_cast<long long>(S), attn.c_str(),
                    kernel.c_str(), mode, med, tflops);
        js << (first ? "" : ", ") << "{\"tokens\": " << S << ", \"attn\": \"" << attn << "\", \"kernel\": \""
           << kernel << "\", \"fused\": " << mode << ", \"ms\": " << med << ", \"tflops\": " << tflops << "}";
        first = false;
      }
      }
      wand::compat::set_sdpa_backend("auto");
      if (outs.count(0) && outs.count(1)) {
        const at::Tensor& a = outs[1];  // fp32 norms: enough for a report
        const at::Tensor& b = outs[0];
        const at::Tensor& hd = h;
        std::printf("bench_dit_block: tokens %lld fused vs unfused: output rel L2 %.3g, update rel L2 %.3g\n",
                    static_cast<long long>(S), ((a - b).norm() / b.norm()).item<double>(),
                    ((a - b).norm() / (b - hd).norm()).item<double>());
      }
      outs.clear();
    }
    js << "]}";
    if (!json_out.empty()) std::ofstream(json_out) << js.str() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dit_block: %s\n", e.what());
    return 1;
  }
}
