// bench_streamed_step: one A14B expert (t2v-A14B geometry, bf16) on CUDA, seconds per
// expert forward (one branch) and per CFG step (both branches interleaved per block), for
//   (a) all blocks resident (WanDit with owned weights on the card, no pool), and
//   (b) blocks streamed by the DitExecutor from pinned host memory under a VRAM budget
//       (default 23 GiB for everything on the card: CUDA context, weight slots, LibTorch's
//       caching allocator capped to the rest),
// at each size, in ONE run, with the true device peak (cudaMemGetInfo: total - free,
// sampled after every timed run; the caching allocator keeps its peak reserved), host RSS
// (VmHWM), the executor's wait / bytes counters and the activation estimate.
//
//   bench_streamed_step [--model DIR]        model dir (high_noise_model/ inside) or an expert dir;
//                                            written with random bf16 weights when missing
//                       [--layers 40] [--sizes 832x480,1280x720] [--frames 81]
//                       [--budget 23GiB] [--repeat 1] [--chunk 0] [--spool DIR]
//                       [--json FILE] [--skip-resident]
//                       [--weights auto|fp8|fp8-tensor]   (b)'s stored dtype (Note [fp8 stored
//                                                dtype]); with (a) run, the error of (b)'s
//                                                forward against (a)'s bf16 one (rel L2, PSNR)
//                       [--tiny]                 CPU smoke: a tiny-t2v expert (fp32, --layers blocks,
//                                                default 4) at 64x48, 5 frames, no budget
// Without CUDA it prints "skip" and exits 0 (unless --tiny: then it runs on the CPU, where the
// numbers mean nothing; the code path and the JSON shape are what the smoke test checks).
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/exec/bench_plan.h"
#include "common/error.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "bench/bench_util.h"
#include "model/make_model/make_model.h"
#include "model/weight_storage.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/dit_executor.h"
#include "scheduler/exec/exec_budget.h"
#include "scheduler/exec/weight_store.h"
#ifdef WAND_HAVE_CUDA
#include "memory/cuda/pinned_host.h"
#endif

namespace fs = std::filesystem;
using namespace wand;
using namespace wand::sched::exec;
using bench::Clock;
using bench::since;

namespace {

struct Size {
  int width = 0, height = 0;
};

struct Args {
  std::string model = "/tmp/wand-bench-a14b";
  int layers = 40;
  std::vector<Size> sizes = {{832, 480}, {1280, 720}};
  int frames = 81;
  std::uint64_t budget = 23ull << 30;  // a 24 GiB card, 1 GiB left to the desktop and other processes
  int repeat = 1;
  std::int64_t chunk = 0;
  std::string spool = "/tmp/wand-bench-spool";
  std::string json;
  bool skip_resident = false;
  bool tiny = false;
  std::string weights = "auto";  // auto | fp8 | fp8-tensor
};

std::uint64_t used_device_bytes() {
  DeviceMemInfo m = device_mem_info(0);
  return m.valid ? m.total_bytes - m.free_bytes : 0;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(ErrorCode::kBadRequest, k + " needs a value");
      return argv[++i];
    };
    if (k == "--model") a.model = next();
    else if (k == "--layers") a.layers = std::stoi(next());
    else if (k == "--frames") a.frames = std::stoi(next());
    else if (k == "--budget") a.budget = memory::parse_bytes(nlohmann::json(next()), "--budget");
    else if (k == "--repeat") a.repeat = std::stoi(next());
    else if (k == "--chunk") a.chunk = std::stoll(next());
    else if (k == "--spool") a.spool = next();
    else if (k == "--json") a.json = next();
    else if (k == "--skip-resident") a.skip_resident = true;
    else if (k == "--weights") a.weights = next();
    else if (k == "--tiny") a.tiny = true;
    else if (k == "--sizes") {
      a.sizes.clear();
      std::stringstream ss(next());
      std::string item;
      while (std::getline(ss, item, ',')) {
        const auto x = item.find('x');
        if (x == std::string::npos) throw Error(ErrorCode::kBadRequest, "--sizes: expected WxH, got " + item);
        a.sizes.push_back({std::stoi(item.substr(0, x)), std::stoi(item.substr(x + 1))});
      }
    } else {
      throw Error(ErrorCode::kBadRequest, "unknown argument " + k);
    }
  }
  if (a.tiny) {
    bool layers_given = false, sizes_given = false, frames_given = false;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      layers_given |= k == "--layers";
      sizes_given |= k == "--sizes";
      frames_given |= k == "--frames";
    }
    if (!layers_given) a.layers = 4;
    if (!sizes_given) a.sizes = {{64, 48}};
    if (!frames_given) a.frames = 5;
  }
  return a;
}

// The expert dir: DIR/high_noise_model, or DIR itself when it holds config.json; written
// (random bf16, release layout, dit only) when absent.
fs::path expert_dir(const Args& a) {
  fs::path d(a.model);
  if (fs::exists(d / "config.json")) return d;
  d /= "high_noise_model";
  if (!fs::exists(d / "config.json")) {
    model::WanConfig cfg = model::WanConfig::from_preset(a.tiny ? "tiny-t2v" : "t2v-A14B");
    cfg.num_layers = a.layers;
    std::printf("writing a random %s %s expert (%d blocks) to %s\n", a.tiny ? "fp32" : "bf16",
                a.tiny ? "tiny-t2v" : "t2v-A14B", a.layers, d.c_str());
    std::fflush(stdout);
    const auto t0 = Clock::now();
    model::make::write_dit_expert(d, cfg, a.tiny ? at::kFloat : at::kBFloat16, 1, 0);
    std::printf("written in %.1f s\n", since(t0));
  }
  return d;
}

struct Inputs {
  StepInputs in;
  std::int64_t tokens = 0;
};

Inputs make_inputs(const model::WanConfig& cfg, const Size& s, int frames) {
  Inputs r;
  const std::int64_t F = (frames - 1) / 4 + 1, H = s.height / 8, W = s.width / 8;
  r.tokens = F * (H / 2) * (W / 2);
  at::manual_seed(3);
  r.in.x = at::randn({cfg.out_dim, F, H, W});
  r.in.t = at::full({1}, 900, at::kLong);
  r.in.context = at::randn({cfg.text_len, cfg.text_dim}) * 0.5;
  r.in.context_null = at::randn({cfg.text_len, cfg.text_dim}) * 0.5;
  r.in.seq_len = r.tokens;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const bool on_cuda = torch_cuda_available();
    if (!on_cuda && !a.tiny) {
      std::printf("skip: bench_streamed_step needs LibTorch on CUDA and a GPU (or --tiny on the CPU)\n");
      return 0;
    }
    const fs::path dir = expert_dir(a);
    model::CheckpointDir ck(dir);
    const model::WanConfig& cfg = ck.config();
    const at::Device cuda = on_cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    const model::RunDtype run = on_cuda ? model::RunDtype::kBFloat16 : model::RunDtype::kFloat32;
    const std::uint64_t budget = on_cuda ? a.budget : 0;  // CPU: no device budget
    nlohmann::json out = {{"bench", "bench_streamed_step"}, {"model", dir.string()}, {"layers", cfg.num_layers},
                          {"frames", a.frames}, {"budget_bytes", budget}, {"device", on_cuda ? "cuda" : "cpu"}, {"results", nlohmann::json::array()}};
    // CUDA context + LibTorch's kernels: measured once the runtime is up.
    at::ones({1}, at::TensorOptions().device(cuda)).sum().item<float>();
    const DeviceMemInfo m0 = device_mem_info(0);
    const std::uint64_t context_bytes = m0.valid ? m0.total_bytes - m0.free_bytes : 0;
    out["device_total_bytes"] = m0.total_bytes;
    out["context_bytes"] = context_bytes;

    std::vector<Inputs> inputs;
    std::uint64_t act_need = 0;
    for (const Size& s : a.sizes) {
      inputs.push_back(make_inputs(cfg, s, a.frames));
      DitGeometry g;
      g.tokens = inputs.back().tokens;
      g.dim = cfg.dim;
      g.ffn_dim = cfg.ffn_dim;
      g.text_len = cfg.text_len;
      g.chunk_tokens = a.chunk;
      act_need = std::max(act_need, dit_activation_bytes(g));
    }

    // (a) all blocks resident.
    std::vector<nlohmann::json> resident(a.sizes.size());
    std::vector<at::Tensor> reference(a.sizes.size());  // (a)'s forward (CPU), for (b)'s error
    WeightStoreOptions wopt;
    wopt.weights = model::parse_weights_dtype(a.weights == "fp8-tensor" ? "fp8" : a.weights, "--weights");
    wopt.fp8_scaling = a.weights == "fp8-tensor" ? model::Fp8Scaling::kTensor : model::Fp8Scaling::kRow;
    out["weights"] = a.weights;
    if (!a.skip_resident) {
      auto t0 = Clock::now();
      model::WanDit dit = model::WanDit::load(ck, run, cuda, true);
      dit.set_chunk_tokens(a.chunk);
      synchronize_device(0);
      std::printf("(a) loaded %lld blocks to the card in %.1f s\n", static_cast<long long>(cfg.num_layers), since(t0));
      for (std::size_t si = 0; si < a.sizes.size(); ++si) {
        const StepInputs& in = inputs[si].in;
        reset_caching_allocator_peak(0);
        reference[si] = dit.forward(in.x, in.t, in.context, in.seq_len).to(at::kCPU);  // warm-up
        synchronize_device(0);
        double fwd = 1e30, cfg_s = 1e30;
        std::uint64_t peak = used_device_bytes();
        for (int r = 0; r < a.repeat; ++r) {
          t0 = Clock::now();
          dit.forward(in.x, in.t, in.context, in.seq_len);
          synchronize_device(0);
          fwd = std::min(fwd, since(t0));
          peak = std::max(peak, used_device_bytes());
          t0 = Clock::now();
          dit.forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len);
          synchronize_device(0);
          cfg_s = std::min(cfg_s, since(t0));
          peak = std::max(peak, used_device_bytes());
        }
        resident[si] = {{"forward_s", fwd}, {"cfg_step_s", cfg_s}, {"peak_device_bytes", peak},
                        {"allocator_peak_reserved_bytes", caching_allocator_peak_reserved(0)}};
        std::printf("(a) %dx%d tokens=%lld forward=%.3f s cfg_step=%.3f s peak=%.2f GiB\n", a.sizes[si].width,
                    a.sizes[si].height, static_cast<long long>(inputs[si].tokens), fwd, cfg_s,
                    static_cast<double>(peak) / (1ull << 30));
        std::fflush(stdout);
      }
    }
    empty_caching_allocator();

    // (b) streamed under the budget.
    {
      model::WanDit dit = model::WanDit::load(ck, run, cuda, false);
      dit.set_chunk_tokens(a.chunk);
      synchronize_device(0);
      const std::uint64_t nonblock = caching_allocator_reserved(0);
      const std::uint64_t act_cap = nonblock + act_need + act_need / 8;
      const std::uint64_t margin = 256ull << 20;
      std::uint64_t max_block = 0;
      for (std::int64_t i = 0; i < cfg.num_layers; ++i) {
        std::uint64_t b = 0;
        for (const auto& n : model::DitBlockWeights::tensor_names(i)) b += ck.info(n).nbytes;
        max_block = std::max(max_block, b);
      }
      if (on_cuda && a.budget < context_bytes + act_cap + margin) {
        throw Error(ErrorCode::kConfig, "budget " + format_bytes(a.budget) + " below context " +
                                            format_bytes(context_bytes) + " + activation cap " + format_bytes(act_cap));
      }
      // CPU smoke: three block slots (streams for real), no budget.
      std::uint64_t slots = on_cuda ? a.budget - context_bytes - act_cap - margin : 3 * max_block + (1ull << 20);
      slots = slots / (2ull << 20) * (2ull << 20) + (on_cuda ? 0 : (2ull << 20));
      cap_caching_allocator(0, act_cap);
      nlohmann::json pj = {{"host", {{"bytes", 0}, {"pinned", on_cuda}}},
                           {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", slots},
                                                               {"backend", on_cuda ? "cuda" : "cpu"}}})},
                           {"io", {{"engine", on_cuda ? "auto" : "psync"}}}};
      // Host: the whole expert plus staging slack (measured below from the store).
      std::uint64_t expert_bytes = 0;
      for (std::int64_t i = 0; i < cfg.num_layers; ++i) {
        for (const auto& n : model::DitBlockWeights::tensor_names(i)) expert_bytes += ck.info(n).nbytes;
      }
      // The other expert (low_noise_model beside it, e.g. --share-experts over the same shards)
      // is registered and read to the host tier too: (b) is "both experts in host memory".
      const fs::path lo_dir = dir.parent_path() / "low_noise_model";
      const bool both = dir.filename() == "high_noise_model" && fs::exists(lo_dir / "config.json");
      const int n_experts = both ? 2 : 1;
      // Exactly sized (issue 6: host memory at most the weights + 5%): each block's copy is its
      // bytes plus, when read straight from the release shards with O_DIRECT, at most one 4 KiB
      // head and tail, in 4 KiB extents; 16 MiB for anything else the stores register.
      std::uint64_t host_exact = 0;
      for (std::int64_t i = 0; i < cfg.num_layers; ++i) {
        std::uint64_t b = 0;
        for (const auto& n : model::DitBlockWeights::tensor_names(i)) {
          const model::TensorInfo& ti = ck.info(n);
          const std::string fd = ti.fp8 ? "F8_E4M3" : model::safetensors_dtype_name(ti.dtype);
          // fp8 blocks are packed: codes + one fp32 scale a row, each 256-byte aligned.
          b += model::block_tensor_storage(n, ti.shape.size(), fd, wopt.weights) == model::StoredAs::kFp8
                   ? static_cast<std::uint64_t>(ti.numel()) + 4 * static_cast<std::uint64_t>(ti.shape[0]) + 512
                   : ti.nbytes + 256;
        }
        host_exact += (b + 2 * 4096 + 4095) / 4096 * 4096;
      }
      pj["host"]["bytes"] = n_experts * host_exact + (16ull << 20);
      out["host_rss_before_pool_bytes"] = bench::proc_status_bytes("VmRSS:");
      out["host_tier_bytes"] = pj["host"]["bytes"];
      memory::PoolDeps deps;
#ifdef WAND_HAVE_CUDA
      if (on_cuda) deps = memory::cuda::pool_deps();
#endif
      memory::MemoryPool pool(memory::PoolConfig::from_json(pj), deps);
      WeightStoreOptions wo = wopt;
      wo.name = "hi";
      wo.pack_dir = a.spool;
      wo.run = run;
      auto t0 = Clock::now();
      WeightStore ws = WeightStore::open(ck, pool, wo);
      out["store"] = ws.status_json();
      std::printf("(b) weight store %s in %.1f s\n", ws.status_json().dump().c_str(), since(t0));
      std::unique_ptr<model::CheckpointDir> ck_lo;
      std::unique_ptr<WeightStore> ws_lo;
      if (both) {
        ck_lo = std::make_unique<model::CheckpointDir>(lo_dir);
        wo.name = "lo";
        ws_lo = std::make_unique<WeightStore>(WeightStore::open(*ck_lo, pool, wo));
        out["store_lo"] = ws_lo->status_json();
      }
      const std::uint64_t host_weights = ws.total_bytes() + (ws_lo ? ws_lo->total_bytes() : 0);
      out["host_experts"] = n_experts;
      out["host_weights_bytes"] = host_weights;
      t0 = Clock::now();
      std::vector<memory::Completion> loads;
      for (const auto& b : ws.blocks()) loads.push_back(pool.request(b.id, pool.host_tier()));
      if (ws_lo) {
        for (const auto& b : ws_lo->blocks()) loads.push_back(pool.request(b.id, pool.host_tier()));
      }
      for (auto& c : loads) c.wait();
      const double host_s = since(t0);
      out["host_load_s"] = host_s;
      out["host_load_gbps"] = static_cast<double>(host_weights) / host_s / 1e9;
      std::printf("(b) %d expert(s) read to %s host: %.1f s (%.2f GB/s)\n", n_experts, on_cuda ? "pinned" : "mmap",
                  host_s, static_cast<double>(host_weights) / host_s / 1e9);

      ExecutorOptions eo;
      eo.device_tier = pool.device_tier(0);
      eo.cuda_device = on_cuda ? 0 : -1;
      eo.budget.budget_bytes = budget;
      eo.budget.context_bytes = context_bytes;
      eo.budget.activation_bytes = act_cap;
      eo.budget.slot_bytes = slots + margin;  // the margin is part of the budget, unused by slots
      const int runs_per_size = 1 + 2 * a.repeat;
      std::vector<int> expert_of_step(static_cast<std::size_t>(runs_per_size) * a.sizes.size(), 0);
      DitExecutor exec(pool, {{&dit, &ws}}, expert_of_step, eo);
      std::int64_t k = 0;
      for (std::size_t si = 0; si < a.sizes.size(); ++si) {
        const StepInputs& in = inputs[si].in;
        reset_caching_allocator_peak(0);
        const at::Tensor streamed_out = exec.forward(k++, in).to(at::kCPU);  // warm-up
        nlohmann::json error = nullptr;
        if (reference[si].defined()) {  // (b) against (a): the fp8 error when --weights fp8
          const at::Tensor ref = reference[si].to(at::kDouble), got = streamed_out.to(at::kDouble);
          const double mse = (got - ref).pow(2).mean().item<double>();
          const double range = (ref.max() - ref.min()).item<double>();
          error = {{"rel_l2", (got - ref).norm().item<double>() / ref.norm().item<double>()},
                   {"psnr_db", mse > 0 ? 10.0 * std::log10(range * range / mse) : 999.0},
                   {"max_abs", (got - ref).abs().max().item<double>()}};
          std::printf("(b) vs (a) forward error: %s\n", error.dump().c_str());
        }
        double fwd = 1e30, cfg_s = 1e30, fwd_wait = 0, cfg_wait = 0;
        std::uint64_t peak = used_device_bytes();
        for (int r = 0; r < a.repeat; ++r) {
          double w0 = exec.stats().wait_s;
          t0 = Clock::now();
          exec.forward(k++, in);
          const double f = since(t0);
          if (f < fwd) { fwd = f; fwd_wait = exec.stats().wait_s - w0; }
          peak = std::max(peak, used_device_bytes());
          w0 = exec.stats().wait_s;
          t0 = Clock::now();
          exec.step(k++, in);
          const double c = since(t0);
          if (c < cfg_s) { cfg_s = c; cfg_wait = exec.stats().wait_s - w0; }
          peak = std::max(peak, used_device_bytes());
        }
        nlohmann::json r = {{"width", a.sizes[si].width},
                            {"height", a.sizes[si].height},
                            {"tokens", inputs[si].tokens},
                            {"resident", resident[si]},
                            {"streamed_vs_resident_error", error},
                            {"streamed",
                             {{"forward_s", fwd},
                              {"forward_wait_s", fwd_wait},
                              {"cfg_step_s", cfg_s},
                              {"cfg_step_wait_s", cfg_wait},
                              {"peak_device_bytes", peak},
                              {"slot_bytes", slots},
                              {"activation_cap_bytes", act_cap},
                              {"activation_estimate_bytes", act_need},
                              {"allocator_peak_reserved_bytes", caching_allocator_peak_reserved(0)}}}};
        // Planner v1 beside it: (a) the whole card, host for both experts; (b) the budget.
        {
          const fs::path root = dir.filename() == "high_noise_model" ? dir.parent_path() : dir;
          // (CPU smoke: a nominal 2 GiB card, so the planner's code path runs on the tiny model.)
          const std::uint64_t host_all = 4 * (expert_bytes + (1ull << 30));
          const std::uint64_t card = m0.valid ? m0.total_bytes : (2ull << 30);
          r["planner"] = {{"a", bench::planner_prediction(root, a.sizes[si].width, a.sizes[si].height, a.frames, 40,
                                                          card, host_all)},
                          // (b) as run: the device tier fixed at this run's slots (Note [Fixed tier]).
                          {"b", bench::planner_prediction(root, a.sizes[si].width, a.sizes[si].height, a.frames, 40,
                                                          on_cuda ? budget : card, host_all, on_cuda ? slots : 0)}};
        }
        if (!resident[si].is_null() && resident[si].contains("forward_s")) {
          r["streamed_over_resident_forward"] = fwd / resident[si]["forward_s"].get<double>();
          r["streamed_over_resident_cfg_step"] = cfg_s / resident[si]["cfg_step_s"].get<double>();
        }
        out["results"].push_back(r);
        std::printf("(b) %dx%d forward=%.3f s (wait %.3f) cfg_step=%.3f s (wait %.3f) peak=%.2f GiB\n",
                    a.sizes[si].width, a.sizes[si].height, fwd, fwd_wait, cfg_s, cfg_wait,
                    static_cast<double>(peak) / (1ull << 30));
        std::fflush(stdout);
      }
      out["executor"] = exec.stats_json();
      out["pool"] = pool.status_json();
    }
    out["host_peak_rss_bytes"] = bench::proc_status_bytes("VmHWM:");
    out["host_rss_bytes"] = bench::proc_status_bytes("VmRSS:");
    std::printf("%s\n", out.dump(1).c_str());
    if (!a.json.empty()) std::ofstream(a.json) << out.dump(1) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_streamed_step: %s\n", e.what());
    return 1;
  }
}
