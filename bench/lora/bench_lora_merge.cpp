// bench_lora_merge: the cost of merging a job's LoRA into one DiT block as it streams
// (model/lora.h, Note [LoRA merge]): random block weights of a real geometry, a rank-R LoRA on
// the ten GEMM weights of the block with diff_b on their biases and diffs on norm3 and the
// modulation (the distill LoRAs' shape), DitLora::apply timed (median of N, synchronised).
//
//   bench_lora_merge [--preset t2v-A14B|ti2v-5B] [--rank 64] [--device cpu|cuda] [--dtype bf16|fp32]
//                    [--iters 5] [--warmup 1]
// Prints one line: preset, device, dtype, rank, changed MiB, merge ms, GFLOP, and the effective
// HBM GB/s of the elementwise pass (12 bytes per changed element).
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "model/dit_block_weights.h"
#include "model/lora.h"
#include "model/safetensors.h"
#include "model/wan_config.h"

using namespace wand::model;

int main(int argc, char** argv) {
  std::string preset = "t2v-A14B", device_name = "cpu", dtype = "bf16";
  int64_t rank = 64;
  int iters = 5, warmup = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--preset") preset = v;
    else if (a == "--rank") rank = std::stoll(v);
    else if (a == "--device") device_name = v;
    else if (a == "--dtype") dtype = v;
    else if (a == "--iters") iters = std::stoi(v);
    else if (a == "--warmup") warmup = std::stoi(v);
    else {
      std::fprintf(stderr, "bench_lora_merge: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const bool cuda = device_name == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::printf("skip: no CUDA device\n");
    return 0;
  }
  try {
    const at::Device dev = cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    const RunDtype run = parse_run_dtype(dtype);
    const WanConfig cfg = WanConfig::from_preset(preset);
    at::NoGradGuard ng;
    // Block 0's weights, random, prepared as a load prepares them.
    std::map<std::string, at::Tensor> m;
    for (const auto& [name, shape] : cfg.block_tensors(0)) m[name] = at::randn(shape) * 0.02;
    const DitBlockWeights w = DitBlockWeights::from_map(m, 0, run, dev);
    m.clear();
    // The LoRA: rank R on the ten GEMMs, diff_b on their biases, diffs on norm3 and modulation.
    std::map<std::string, at::Tensor> lora;
    const int64_t D = cfg.dim, F = cfg.ffn_dim;
    auto pair = [&](const std::string& mod, int64_t out, int64_t in) {
      const std::string k = "diffusion_model.blocks.0." + mod;
      lora[k + ".lora_down.weight"] = (at::randn({rank, in}) * 0.01).to(at::kBFloat16);
      lora[k + ".lora_up.weight"] = (at::randn({out, rank}) * 0.01).to(at::kBFloat16);
      lora[k + ".alpha"] = at::full({}, static_cast<double>(rank));
      lora[k + ".diff_b"] = (at::randn({out}) * 0.01).to(at::kBFloat16);
    };
    for (const char* a : {"self_attn", "cross_attn"}) {
      for (const char* l : {"q", "k", "v", "o"}) pair(std::string(a) + "." + l, D, D);
    }
    pair("ffn.0", F, D);
    pair("ffn.2", D, F);
    lora["diffusion_model.blocks.0.norm3.diff"] = at::zeros({D}).to(at::kBFloat16);
    lora["diffusion_model.blocks.0.modulation.diff"] = (at::randn({1, 6, D}) * 0.01).to(at::kBFloat16);
    const std::string path = (std::filesystem::temp_directory_path() / "bench_lora_merge.safetensors").string();
    save_safetensors(path, lora);
    lora.clear();
    // Read against a one-block config of the same geometry.
    WanConfig one = cfg;
    one.num_layers = 1;
    auto file = LoraFile::read(path, one)->to(dev);
    std::filesystem::remove(path);
    auto dl = DitLora::build({{file, 1.0}}, dev, run);
    auto sync = [&] {
      if (cuda) torch::cuda::synchronize();
    };
    for (int i = 0; i < warmup; ++i) {
      DitBlockWeights o = dl->apply(0, w);
      sync();
    }
    std::vector<double> ms;
    for (int i = 0; i < iters; ++i) {
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      DitBlockWeights o = dl->apply(0, w);
      sync();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    const double gflop = 2.0 * static_cast<double>(rank) * (8.0 * D * D + 2.0 * D * F) / 1e9;
    const double elems = static_cast<double>(dl->max_block_changed_elements());
    std::printf("preset=%s device=%s dtype=%s rank=%lld changed=%.1fMiB factors=%.1fMiB merge_ms=%.2f gflop=%.1f "
                "elementwise_gbps=%.1f\n",
                preset.c_str(), device_name.c_str(), dtype.c_str(), static_cast<long long>(rank),
                elems * (run == RunDtype::kFloat32 ? 4 : 2) / 1048576.0, dl->factor_bytes() / 1048576.0, med, gflop,
                elems * 12.0 / (med * 1e-3) / 1e9);
    return 0;
  } catch (const wand::Error& e) {
    std::fprintf(stderr, "bench_lora_merge: %s\n", e.what());
    return 1;
  }
}
