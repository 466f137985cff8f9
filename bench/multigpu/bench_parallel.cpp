// bench_parallel: one job's denoising step on 1..N cards of one process (issue 8), with
// the DiT blocks streamed to every card from ONE shared pinned host copy (one MemoryPool:
// a host tier + a device tier per card; ParallelDitRunner + one exec::BlockStreamer per card).
// For every N (1, each power of two between, all cards) and size, every strategy that
// applies (single, cfg-parallel, ulysses-N, cfg2xulysses-N/2; the planner's choice marked):
// seconds per denoising step (both CFG branches; 1 warm-up + --timed steps), one step's
// prediction vs the single-card path (relative L2), the peak device memory per card
// (cudaMemGetInfo total - free, sampled after every step), the host -> card bytes per
// card per second and the host-read GB/s summed over cards (the pool's per-tier counters),
// and the host RSS. Each card gets --budget (default 23 GiB): CUDA context + weight slots
// (its device tier) + LibTorch's caching allocator capped to the activation estimate
// (Note [Device budget], scheduler/exec/exec_budget.h), minus --headroom (default
// 1.25 GiB, so that the peak stays <= 23 GiB, the target).
//
//   bench_parallel [--model DIR]       A14B dir (high_noise_model/ inside) or an expert dir;
//                                      written (random bf16, --layers blocks) when missing
//                  [--sizes 832x480,1280x720] [--frames 81] [--gpus N] [--timed 2]
//                  [--strategies all|chosen|single,cfg-parallel,...] [--budget 23GiB]
//                  [--headroom 1.25GiB] [--layers 40] [--json FILE] [--md FILE]
//                  [--check-tol X]     exit 3 when a strategy's rel L2 vs single exceeds X
//                  [--tiny]            CPU smoke test: a tiny 12-head fp32 model, fake
//                                      cards (CpuDeviceTier) and FakeCollective groups
// Without CUDA and without --tiny it prints "skip" and exits 0.
#include <algorithm>
#include <cstring>
#include <thread>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <c10/core/DeviceGuard.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/error.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/make_model/make_model.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/exec_budget.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/multigpu/parallel_runner.h"
#include "scheduler/multigpu/parallel_strategy.h"
#if defined(WAND_HAVE_CUDA)
#include <cuda_runtime.h>

#include "memory/cuda/pinned_host.h"
#endif

namespace fs = std::filesystem;
using namespace wand;
using namespace wand::sched;
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
  int gpus = 0;  // 0: every visible GPU (tiny: 4 fake cards)
  int timed = 2;
  std::string strategies = "all";
  std::uint64_t budget = 23ull << 30;  // a 24 GiB card, 1 GiB left to the desktop and other processes
  std::uint64_t headroom = 1280ull << 20;
  std::string json, md;
  bool tiny = false;
  double check_tol = 0;  // > 0: exit 3 when a strategy's rel L2 vs single exceeds it
};

std::vector<Size> parse_sizes(const std::string& text) {
  std::vector<Size> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto x = item.find('x');
    if (x == std::string::npos) throw Error(ErrorCode::kBadRequest, "--sizes: expected WxH, got " + item);
    out.push_back({std::stoi(item.substr(0, x)), std::stoi(item.substr(x + 1))});
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  bool sizes_given = false, frames_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(ErrorCode::kBadRequest, k + " needs a value");
      return argv[++i];
    };
    if (k == "--model") a.model = next();
    else if (k == "--layers") a.layers = std::stoi(next());
    else if (k == "--frames") { a.frames = std::stoi(next()); frames_given = true; }
    else if (k == "--gpus") a.gpus = std::stoi(next());
    else if (k == "--timed") a.timed = std::stoi(next());
    else if (k == "--strategies") a.strategies = next();
    else if (k == "--budget") a.budget = memory::parse_bytes(nlohmann::json(next()), "--budget");
    else if (k == "--headroom") a.headroom = memory::parse_bytes(nlohmann::json(next()), "--headroom");
    else if (k == "--json") a.json = next();
    else if (k == "--md") a.md = next();
    else if (k == "--tiny") a.tiny = true;
    else if (k == "--check-tol") a.check_tol = std::stod(next());
    else if (k == "--sizes") { a.sizes = parse_sizes(next()); sizes_given = true; }
    else throw Error(ErrorCode::kBadRequest, "unknown argument " + k);
  }
  if (a.tiny) {
    if (!sizes_given) a.sizes = {{64, 48}, {80, 64}};
    if (!frames_given) a.frames = 9;
    if (a.gpus == 0) a.gpus = 4;
  }
  if (a.timed < 1) throw Error(ErrorCode::kBadRequest, "--timed must be >= 1");
  return a;
}

int visible_gpus() {
#if defined(WAND_HAVE_CUDA)
  int n = 0;
  if (exec::torch_cuda_available() && cudaGetDeviceCount(&n) == cudaSuccess) return n;
#endif
  return 0;
}

// The expert dir (written when absent): full-size A14B bf16, or the tiny 12-head fp32 model.
fs::path expert_dir(const Args& a) {
  if (a.tiny) {
    fs::path d = fs::temp_directory_path() / ("wand-bench-parallel-tiny-" + std::to_string(::getpid()));
    model::WanConfig cfg = model::WanConfig::from_preset("tiny-t2v", 32);
    cfg.dim = 192;
    cfg.num_heads = 12;
    cfg.ffn_dim = 256;
    cfg.num_layers = 5;
    cfg.text_len = 16;
    model::make::write_dit_expert(d, cfg, at::kFloat, 11, 0);
    return d;
  }
  fs::path d(a.model);
  if (fs::exists(d / "config.json")) return d;
  d /= "high_noise_model";
  if (!fs::exists(d / "config.json")) {
    model::WanConfig cfg = model::WanConfig::from_preset("t2v-A14B");
    cfg.num_layers = a.layers;
    std::printf("writing a random bf16 t2v-A14B expert (%d blocks) to %s\n", a.layers, d.c_str());
    std::fflush(stdout);
    const auto t0 = Clock::now();
    model::make::write_dit_expert(d, cfg, at::kBFloat16, 1, 0);
    std::printf("written in %.1f s\n", since(t0));
  }
  return d;
}

exec::StepInputs make_inputs(const model::WanConfig& cfg, const Size& s, int frames, std::int64_t* tokens) {
  const std::int64_t F = (frames - 1) / 4 + 1, H = s.height / 8, W = s.width / 8;
  *tokens = F * (H / 2) * (W / 2);
  at::manual_seed(3);
  exec::StepInputs in;
  in.x = at::randn({cfg.out_dim, F, H, W});
  in.t = at::full({1}, 900.0);
  in.context = at::randn({cfg.text_len, cfg.text_dim}) * 0.5;
  in.context_null = at::randn({cfg.text_len, cfg.text_dim}) * 0.5;
  in.seq_len = *tokens;
  return in;
}

double rel_l2(const at::Tensor& a, const at::Tensor& ref) {
  const at::Tensor r = ref.to(at::kDouble).cpu();
  return (a.to(at::kDouble).cpu() - r).norm().item<double>() / r.norm().item<double>();
}

std::vector<int> gpu_counts(int all) {
  std::vector<int> n = {1};
  for (int p = 2; p < all; p *= 2) n.push_back(p);
  if (all > 1) n.push_back(all);
  return n;
}

// Host memory bandwidth: memcpy of an n-byte buffer (best of 3), GB/s (bytes copied / s).
double host_memcpy_gbps(std::size_t n) {
  std::vector<char> a(n, 1), b(n, 0);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), n);
    best = std::min(best, since(t0));
  }
  return static_cast<double>(n) / best / 1e9;
}

// Pinned host -> device copies of 1 GiB, all cards at once (one thread each), best of 3:
// per-card GB/s and the sum (the host bandwidth N cards share).
std::vector<double> h2d_gbps(int cards) {
  const std::int64_t n = 1ll << 30;
  at::Tensor src = at::empty({n}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  src.fill_(1);
  std::vector<at::Tensor> dst;
  for (int g = 0; g < cards; ++g) dst.push_back(at::empty({n}, at::TensorOptions().dtype(at::kByte).device(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g)))));
  std::vector<double> best(static_cast<std::size_t>(cards), 1e30);
  for (int it = 0; it < 3; ++it) {
    std::vector<std::thread> th;
    for (int g = 0; g < cards; ++g) {
      th.emplace_back([&, g] {
        c10::OptionalDeviceGuard guard(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g)));
        exec::synchronize_device(g);
        const auto t0 = Clock::now();
        dst[static_cast<std::size_t>(g)].copy_(src);
        exec::synchronize_device(g);
        best[static_cast<std::size_t>(g)] = std::min(best[static_cast<std::size_t>(g)], since(t0));
      });
    }
    for (auto& t : th) t.join();
  }
  std::vector<double> out;
  for (double b : best) out.push_back(static_cast<double>(n) / b / 1e9);
  return out;
}

std::string gib(std::uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(b) / (1ull << 30));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const bool cuda = !a.tiny;
    const int visible = cuda ? visible_gpus() : a.gpus;
    if (cuda && visible == 0) {
      std::printf("skip: bench_parallel needs LibTorch on CUDA and a GPU (or --tiny)\n");
      return 0;
    }
    const int cards = a.gpus > 0 ? std::min(a.gpus, cuda ? visible : a.gpus) : visible;
    const auto t_all = Clock::now();
    const fs::path dir = expert_dir(a);
    model::CheckpointDir ck(dir);
    const model::WanConfig& cfg = ck.config();
    const model::RunDtype run = a.tiny ? model::RunDtype::kFloat32 : model::RunDtype::kBFloat16;
    auto device_of = [&](int g) { return cuda ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g)) : at::Device(at::kCPU); };
    nlohmann::json out = {{"bench", "bench_parallel"}, {"model", dir.string()}, {"layers", cfg.num_layers},
                          {"heads", cfg.num_heads}, {"frames", a.frames}, {"cards", cards},
                          {"mode", a.tiny ? "cpu-tiny-fake-collectives" : "cuda-nccl"},
                          {"budget_bytes", a.budget}, {"headroom_bytes", a.headroom},
                          {"results", nlohmann::json::array()}};

    // Per card: CUDA context, non-block weights.
    std::vector<std::uint64_t> context(static_cast<std::size_t>(cards), 0);
    std::vector<std::unique_ptr<model::WanDit>> nonblock;
    for (int g = 0; g < cards; ++g) {
      if (cuda) {
        at::ones({1}, at::TensorOptions().device(device_of(g))).sum().item<float>();
        const exec::DeviceMemInfo m = exec::device_mem_info(g);
        context[static_cast<std::size_t>(g)] = m.total_bytes - m.free_bytes;
      }
      nonblock.push_back(std::make_unique<model::WanDit>(model::WanDit::load(ck, run, device_of(g), false)));
    }
    std::uint64_t nonblock_bytes = cuda ? exec::caching_allocator_reserved(0) : 0;
    out["host_memcpy_gbps"] = host_memcpy_gbps(a.tiny ? (64ull << 20) : (1ull << 30));
    if (cuda) {
      const std::vector<double> h2d = h2d_gbps(cards);
      double sum = 0;
      for (double v : h2d) sum += v;
      out["h2d_gbps_per_card_concurrent"] = h2d;
      out["h2d_gbps_sum_concurrent"] = sum;
      exec::empty_caching_allocator();
    }
    std::printf("host memcpy %.1f GB/s%s\n", out["host_memcpy_gbps"].get<double>(),
                cuda ? (", pinned->device all cards at once " + out["h2d_gbps_sum_concurrent"].dump() + " GB/s").c_str() : "");

    // Activation cap from the largest size (one CFG step on one card: the worst case).
    std::uint64_t act_need = 0;
    for (const Size& s : a.sizes) {
      std::int64_t tokens = 0;
      make_inputs(cfg, s, a.frames, &tokens);
      exec::DitGeometry geo;
      geo.tokens = tokens;
      geo.dim = cfg.dim;
      geo.ffn_dim = cfg.ffn_dim;
      geo.text_len = cfg.text_len;
      geo.run_bytes = a.tiny ? 4 : 2;
      act_need = std::max(act_need, exec::dit_activation_bytes(geo));
    }
    const std::uint64_t act_cap = nonblock_bytes + act_need + act_need / 8;
    std::uint64_t expert_bytes = 0;
    for (std::int64_t i = 0; i < cfg.num_layers; ++i) {
      for (const auto& n : model::DitBlockWeights::tensor_names(i)) expert_bytes += ck.info(n).nbytes;
    }
    std::uint64_t slots = 0;
    if (cuda) {
      const std::uint64_t ctx = *std::max_element(context.begin(), context.end());
      if (a.budget < ctx + act_cap + a.headroom + (1ull << 30)) {
        throw Error(ErrorCode::kConfig, "budget " + format_bytes(a.budget) + " below context " + format_bytes(ctx) +
                                            " + activation cap " + format_bytes(act_cap) + " + headroom " +
                                            format_bytes(a.headroom) + " + 1 GiB of weight slots");
      }
      slots = (a.budget - ctx - act_cap - a.headroom) / (2ull << 20) * (2ull << 20);
      for (int g = 0; g < cards; ++g) exec::cap_caching_allocator(g, act_cap);
    } else {
      slots = 3 * (expert_bytes / static_cast<std::uint64_t>(cfg.num_layers)) + (1ull << 20);  // ~3 blocks: streams
    }
    out["slot_bytes_per_card"] = slots;
    out["activation_cap_bytes"] = act_cap;
    out["activation_estimate_bytes"] = act_need;
    out["context_bytes"] = context;

    // One pool: the shared host tier (the expert, pinned) + one device tier per card.
    nlohmann::json devs = nlohmann::json::array();
    for (int g = 0; g < cards; ++g) devs.push_back({{"index", g}, {"bytes", slots}, {"backend", cuda ? "cuda" : "cpu"}});
    nlohmann::json pj = {{"host", {{"bytes", expert_bytes + expert_bytes / 40 + (256ull << 20)}, {"pinned", cuda}}},
                         {"devices", devs},
                         {"io", {{"engine", cuda ? "auto" : "psync"}}}};
    memory::PoolDeps deps;
#if defined(WAND_HAVE_CUDA)
    if (cuda) deps = memory::cuda::pool_deps();
#endif
    memory::MemoryPool pool(memory::PoolConfig::from_json(pj), deps);
    exec::WeightStoreOptions wo;
    wo.run = run;
    wo.name = "hi";
    wo.pack_dir = (fs::temp_directory_path() / "wand-bench-spool").string();
    exec::WeightStore store = exec::WeightStore::open(ck, pool, wo);
    auto t0 = Clock::now();
    {
      std::vector<memory::Completion> loads;
      for (const auto& b : store.blocks()) loads.push_back(pool.request(b.id, pool.host_tier()));
      for (auto& c : loads) c.wait();
    }
    out["host_load_s"] = since(t0);
    out["host_copy_bytes"] = pool.tier(pool.host_tier()).stats().bytes_used;
    out["host_rss_after_load_bytes"] = bench::proc_status_bytes("VmRSS:");
    std::printf("expert in pinned host memory: %s GiB in %.1f s; %d card(s), %s GiB slots each, act cap %s GiB\n",
                gib(store.total_bytes()).c_str(), since(t0), cards, gib(slots).c_str(), gib(act_cap).c_str());
    std::fflush(stdout);

    const std::int64_t steps = 1 + a.timed;
    for (const Size& s : a.sizes) {
      std::int64_t tokens = 0;
      const exec::StepInputs in = make_inputs(cfg, s, a.frames, &tokens);
      at::Tensor ref_cond, ref_uncond;
      double single_s = 0;
      for (int n : gpu_counts(cards)) {
        const ParallelStrategy chosen = choose_strategy(n, cfg.num_heads);
        std::vector<ParallelStrategy> list;
        if (a.strategies == "chosen") {
          list.push_back(chosen);
        } else if (a.strategies == "all") {
          list = strategies_for(n, cfg.num_heads);
        } else {
          std::stringstream ss(a.strategies);
          std::string item;
          while (std::getline(ss, item, ',')) {
            const ParallelStrategy p = parse_strategy(item);
            if (p.ranks() == n) list.push_back(p);
          }
        }
        if (n == 1 && std::find(list.begin(), list.end(), ParallelStrategy{}) == list.end()) {
          list.insert(list.begin(), ParallelStrategy{});  // the reference
        }
        for (const ParallelStrategy& st : list) {
          std::vector<ParallelRank> ranks;
          for (int g = 0; g < n; ++g) ranks.push_back({pool.device_tier(g), cuda ? g : -1, {nonblock[static_cast<std::size_t>(g)].get()}});
#if defined(WAND_HAVE_NCCL)
          const GroupFactory groups = cuda ? nccl_group_factory() : fake_group_factory();
#else
          const GroupFactory groups = fake_group_factory();
#endif
          std::printf("[%5.0f s] %dx%d tokens=%lld cards=%d strategy=%s%s ...\n", since(t_all), s.width, s.height,
                      static_cast<long long>(tokens), n, st.name().c_str(), st == chosen ? " (chosen)" : "");
          std::fflush(stdout);
          ParallelDitRunner runner(pool, {&store}, std::vector<int>(static_cast<std::size_t>(steps), 0), ranks, st,
                                   groups);
          std::vector<std::uint64_t> peak(static_cast<std::size_t>(n), 0);
          auto sample_peak = [&] {
            for (int g = 0; g < n && cuda; ++g) {
              const exec::DeviceMemInfo m = exec::device_mem_info(g);
              peak[static_cast<std::size_t>(g)] = std::max(peak[static_cast<std::size_t>(g)], m.total_bytes - m.free_bytes);
            }
          };
          for (int g = 0; g < n && cuda; ++g) exec::reset_caching_allocator_peak(g);
          auto [cond, uncond] = runner.step(0, in);  // warm-up (and the equality check)
          sample_peak();
          const double err = n == 1 && st.kind == ParallelKind::kSingle
                                 ? 0.0
                                 : std::max(rel_l2(cond, ref_cond), rel_l2(uncond, ref_uncond));
          if (st.kind == ParallelKind::kSingle) {
            ref_cond = cond.cpu();
            ref_uncond = uncond.cpu();
          }
          cond = at::Tensor();
          uncond = at::Tensor();
          std::vector<std::uint64_t> in0;
          for (int g = 0; g < n; ++g) in0.push_back(runner.streamer(g).stats().device_bytes_in);
          const std::uint64_t host_out0 = pool.tier(pool.host_tier()).stats().bytes_moved_out;
          double wait0 = 0;
          for (int g = 0; g < n; ++g) wait0 = std::max(wait0, runner.streamer(g).stats().wait_s);
          t0 = Clock::now();
          for (std::int64_t k = 1; k < steps; ++k) {
            runner.step(k, in);
            sample_peak();
          }
          const double step_s = since(t0) / static_cast<double>(a.timed);
          if (st.kind == ParallelKind::kSingle) single_s = step_s;
          nlohmann::json r = {{"width", s.width},     {"height", s.height},   {"tokens", tokens},
                              {"cards", n},           {"strategy", st.name()}, {"chosen", st == chosen},
                              {"step_s", step_s},     {"timed_steps", a.timed},
                              {"speedup_vs_single", single_s > 0 ? single_s / step_s : 0.0},
                              {"rel_l2_vs_single", err},
                              {"host_read_gbps_sum",
                               static_cast<double>(pool.tier(pool.host_tier()).stats().bytes_moved_out - host_out0) /
                                   (step_s * a.timed) / 1e9},
                              {"host_rss_bytes", bench::proc_status_bytes("VmRSS:")},
                              {"host_peak_rss_bytes", bench::proc_status_bytes("VmHWM:")}};
          nlohmann::json per = nlohmann::json::array();
          double wait_max = 0;
          for (int g = 0; g < n; ++g) {
            const exec::BlockStreamerStats& ss = runner.streamer(g).stats();
            const double pcie = static_cast<double>(ss.device_bytes_in - in0[static_cast<std::size_t>(g)]) / (step_s * a.timed);
            wait_max = std::max(wait_max, ss.wait_s);
            per.push_back({{"card", g},
                           {"peak_device_bytes", peak[static_cast<std::size_t>(g)]},
                           {"allocator_peak_reserved_bytes", cuda ? exec::caching_allocator_peak_reserved(g) : 0},
                           {"pcie_gbps", pcie / 1e9},
                           {"device_bytes_in", ss.device_bytes_in},
                           {"wait_s", ss.wait_s}});
          }
          r["per_card"] = per;
          r["max_card_wait_s_timed"] = wait_max - wait0;
          out["results"].push_back(r);
          std::printf("[%5.0f s]   step %.3f s  x%.2f vs single  rel L2 %.2e  host read %.2f GB/s  peak/card %s GiB\n",
                      since(t_all), step_s, single_s > 0 ? single_s / step_s : 0.0, err,
                      r["host_read_gbps_sum"].get<double>(),
                      gib(peak.empty() ? 0 : *std::max_element(peak.begin(), peak.end())).c_str());
          std::fflush(stdout);
        }
      }
    }
    out["host_peak_rss_bytes"] = bench::proc_status_bytes("VmHWM:");
    out["total_s"] = since(t_all);
    if (a.tiny) fs::remove_all(dir);
    const std::string text = out.dump(1);
    if (!a.json.empty()) std::ofstream(a.json) << text << "\n";
    if (!a.md.empty()) {
      std::ofstream m(a.md);
      m << "# bench_parallel (" << out["mode"].get<std::string>() << ")\n\n"
        << "model " << dir.string() << ", " << cfg.num_layers << " blocks, " << a.frames << " frames, " << cards
        << " card(s), budget " << format_bytes(a.budget) << " per card (slots " << format_bytes(slots)
        << ", activation cap " << format_bytes(act_cap) << "), host copy " << format_bytes(store.total_bytes())
        << ", host peak RSS " << format_bytes(bench::proc_status_bytes("VmHWM:")) << "\n\n"
        << "host memcpy " << out["host_memcpy_gbps"].dump() << " GB/s; pinned host -> device, all cards at once: "
        << (out.contains("h2d_gbps_per_card_concurrent") ? out["h2d_gbps_per_card_concurrent"].dump() : "n/a")
        << " GB/s; expert read into pinned host memory in " << out["host_load_s"].dump() << " s\n\n"
        << "| size | cards | strategy | s/step | x single | rel L2 vs single | peak GiB/card (max) | PCIe GB/s/card (mean) | host read GB/s (sum) | host RSS GiB |\n"
        << "|---|---|---|---|---|---|---|---|---|---|\n";
      for (const auto& r : out["results"]) {
        std::uint64_t pk = 0;
        double pcie = 0;
        for (const auto& c : r["per_card"]) {
          pk = std::max(pk, c["peak_device_bytes"].get<std::uint64_t>());
          pcie += c["pcie_gbps"].get<double>();
        }
        char line[512];
        std::snprintf(line, sizeof line, "| %dx%d | %d | %s%s | %.3f | %.2f | %.2e | %s | %.2f | %.2f | %s |\n",
                      r["width"].get<int>(), r["height"].get<int>(), r["cards"].get<int>(),
                      r["strategy"].get<std::string>().c_str(), r["chosen"].get<bool>() ? " *" : "",
                      r["step_s"].get<double>(), r["speedup_vs_single"].get<double>(),
                      r["rel_l2_vs_single"].get<double>(), gib(pk).c_str(), pcie / r["per_card"].size(),
                      r["host_read_gbps_sum"].get<double>(), gib(r["host_rss_bytes"].get<std::uint64_t>()).c_str());
        m << line;
      }
      m << "\n`*` = the planner's choice (choose_strategy). Total " << out["total_s"].get<double>() << " s.\n";
    }
    std::printf("done in %.0f s\n", since(t_all));
    if (a.check_tol > 0) {
      for (const auto& r : out["results"]) {
        if (r["rel_l2_vs_single"].get<double>() > a.check_tol) {
          std::fprintf(stderr, "bench_parallel: %s on %d cards at %dx%d: rel L2 %.3g vs single > %.3g\n",
                       r["strategy"].get<std::string>().c_str(), r["cards"].get<int>(), r["width"].get<int>(),
                       r["height"].get<int>(), r["rel_l2_vs_single"].get<double>(), a.check_tol);
          return 3;
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_parallel: %s\n", e.what());
    return 1;
  }
}
