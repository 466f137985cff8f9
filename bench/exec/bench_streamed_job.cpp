// bench_streamed_job: case (c) of issue 6 item 6: one whole t2v job (default 832x480, 81
// frames, 40 steps) through the daemon's job path (sched::WanPipeline in streamed mode:
// prepare -> steps -> decode, Note [One job path]) with
//   - the DiT experts served by scheduler/wan's StreamedDit (GeneratorOptions::cfg_forward)
//     under a device budget (default 23 GiB: CUDA context + weight slots + LibTorch's capped
//     allocator) and a host budget (default 32 GiB: less than one expert plus the text
//     encoder), the host tier planned over the job (host_window_bytes, default one expert:
//     the idle expert is read from disk ahead of the switch while the finished one is
//     evicted block by block);
//   - the umT5 encoder streamed from its .pth through the same pool (T5Stream);
//   - the VAE decode under what is left of the device budget (VaeDecodeOptions::budget_bytes,
//     the video gathered in host memory);
// and, in the same process afterwards, (a): one expert resident on the card, seconds per
// CFG step on the job's own inputs, so that (a)'s whole job = T5 + steps x (a) step + decode.
//
//   bench_streamed_job [--model DIR]       A14B release dir (high_noise_model/, low_noise_model/, T5, VAE)
//                      [--size 832x480] [--frames 81] [--steps 40] [--seed 42]
//                      [--budget 23GiB] [--host-budget 32GiB] [--host-reserve 2GiB]
//                      [--host-window BYTES]  (default: one expert)
//                      [--spool DIR] [--json FILE] [--skip-a] [--disk-gbps X]
//                      [--tiny]               write a tiny-t2v model (CPU smoke: 64x48, 5 frames, 4 steps)
// Without CUDA it runs on the CPU (CpuDeviceTier, fp32, no device budget): the numbers mean
// nothing there, the code path and the JSON shape are what the smoke test checks.
//
// Peaks: a sampler thread reads cudaMemGetInfo (total - free: everything on the card, the
// pool's slots, LibTorch's reserve, the context) every 2 ms, per phase (t5, steps, decode);
// LibTorch's allocator peak reserved; the process's VmHWM / VmRSS. Bytes from disk: the T5
// layers + the executor's disk -> host bytes + the token-embedding rows.
// Single-threaded except the sampler. Exit 0 with the JSON written, 1 on an error.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/exec/bench_plan.h"
#include "common/error.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/make_model/make_model.h"
#include "model/generator.h"
#include "model/pth.h"
#include "model/tokenizer.h"
#include "model/vae.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/dit_executor.h"
#include "scheduler/exec/exec_budget.h"
#include "scheduler/wan/streamed_dit.h"
#include "scheduler/exec/t5_stream.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/cancel_token.h"
#include "scheduler/job_spec.h"
#include "scheduler/wan/wan_pipeline.h"
#ifdef WAND_HAVE_CUDA
#include "memory/cuda/pinned_host.h"
#endif

namespace fs = std::filesystem;
using namespace wand;
using namespace wand::sched::exec;
using bench::Clock;
using bench::since;

namespace {

struct Args {
  std::string model = "/tmp/wand-bench-a14b";
  int width = 832, height = 480, frames = 81, steps = 40;
  std::uint64_t seed = 42;
  std::uint64_t budget = 23ull << 30;  // a 24 GiB card, 1 GiB left to the desktop and other processes
  std::uint64_t host_budget = 32ull << 30;
  std::uint64_t host_reserve = 2ull << 30;
  std::uint64_t host_window = 0;
  std::string spool = "/tmp/wand-bench-spool";
  std::string json;
  bool skip_a = false;
  bool tiny = false;
  double disk_gbps = 0;
  std::string prompt = "a red kite over a grey sea at dawn, cinematic, slow camera pan";
};

std::uint64_t bytes_arg(const std::string& v, const std::string& flag) {
  return memory::parse_bytes(nlohmann::json(v), flag);
}

Args parse(int argc, char** argv) {
  Args a;
  bool size_given = false, frames_given = false, steps_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(ErrorCode::kBadRequest, k + " needs a value");
      return argv[++i];
    };
    if (k == "--model") a.model = next();
    else if (k == "--size") {
      const std::string s = next();
      const auto x = s.find('x');
      if (x == std::string::npos) throw Error(ErrorCode::kBadRequest, "--size: expected WxH, got " + s);
      a.width = std::stoi(s.substr(0, x));
      a.height = std::stoi(s.substr(x + 1));
      size_given = true;
    } else if (k == "--frames") { a.frames = std::stoi(next()); frames_given = true; }
    else if (k == "--steps") { a.steps = std::stoi(next()); steps_given = true; }
    else if (k == "--seed") a.seed = std::stoull(next());
    else if (k == "--budget") a.budget = bytes_arg(next(), k);
    else if (k == "--host-budget") a.host_budget = bytes_arg(next(), k);
    else if (k == "--host-reserve") a.host_reserve = bytes_arg(next(), k);
    else if (k == "--host-window") a.host_window = bytes_arg(next(), k);
    else if (k == "--spool") a.spool = next();
    else if (k == "--json") a.json = next();
    else if (k == "--skip-a") a.skip_a = true;
    else if (k == "--disk-gbps") a.disk_gbps = std::stod(next());
    else if (k == "--prompt") a.prompt = next();
    else if (k == "--tiny") a.tiny = true;
    else throw Error(ErrorCode::kBadRequest, "unknown argument " + k);
  }
  if (a.tiny) {
    if (!size_given) { a.width = 64; a.height = 48; }
    if (!frames_given) a.frames = 5;
    if (!steps_given) a.steps = 4;
  }
  return a;
}

// Samples the card's true use (cudaMemGetInfo) every 2 ms, the maximum per phase.
class PeakSampler {
 public:
  enum Phase { kT5 = 0, kSteps = 1, kDecode = 2, kA = 3, kPhases = 4 };
  explicit PeakSampler(bool on) : on_(on) {
    if (on_) th_ = std::thread([this] { loop(); });
  }
  ~PeakSampler() { stop(); }
  void stop() {
    stop_ = true;
    if (th_.joinable()) th_.join();
  }
  void phase(Phase p) {
    sample();
    phase_ = p;
  }
  std::uint64_t peak(Phase p) const { return peak_[p]; }
  std::uint64_t peak_all() const {
    std::uint64_t m = 0;
    for (const auto& v : peak_) m = std::max<std::uint64_t>(m, v);
    return m;
  }

 private:
  void sample() {
    if (!on_) return;
    const DeviceMemInfo m = device_mem_info(0);
    if (!m.valid) return;
    const std::uint64_t used = m.total_bytes - m.free_bytes;
    std::atomic<std::uint64_t>& p = peak_[phase_.load()];
    std::uint64_t cur = p.load();
    while (used > cur && !p.compare_exchange_weak(cur, used)) {
    }
  }
  void loop() {
    while (!stop_) {
      sample();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  bool on_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{kT5};
  std::atomic<std::uint64_t> peak_[kPhases] = {};
  std::thread th_;
};

// Bytes of an expert's blocks (stored) and non-block weights (fp32 upper bound), from the index.
struct ExpertBytes {
  std::uint64_t blocks = 0, max_block = 0, nonblock = 0;
};
ExpertBytes expert_bytes(const fs::path& dir, at::ScalarType run_gemm) {
  model::CheckpointDir ck(dir);
  ExpertBytes e;
  const std::uint64_t el = at::elementSize(run_gemm);
  for (std::int64_t i = 0; i < ck.config().num_layers; ++i) {
    std::uint64_t b = 0;
    for (const auto& n : model::DitBlockWeights::tensor_names(i)) b += static_cast<std::uint64_t>(ck.info(n).numel()) * el;
    e.blocks += b;
    e.max_block = std::max(e.max_block, b);
  }
  for (const std::string& n : ck.names()) {
    if (n.rfind("blocks.", 0) != 0) e.nonblock += static_cast<std::uint64_t>(ck.info(n).numel()) * 4;
  }
  return e;
}

fs::path ensure_model(const Args& a) {
  fs::path d(a.model);
  if (fs::exists(d / "high_noise_model" / "config.json")) return d;
  if (!a.tiny) {
    throw Error(ErrorCode::kNotFound, "no A14B model at " + d.string() +
                                          " (write it first: bench/exec/run.sh --prepare-only, or wand-make-model "
                                          "--preset t2v-A14B --dtype bf16 --share-experts --out " + d.string() + ")");
  }
  model::make::MakeModelOptions o;
  o.preset = "tiny-t2v";
  o.out = d;
  o.seed = 1;
  o.dtype = at::kBFloat16;
  o.share_experts = true;
  model::make::make_model(o);
  return d;
}

fs::path vae_file(const fs::path& dir) {
  for (const char* f : {"Wan2.1_VAE.pth", "Wan2.2_VAE.pth"}) {
    if (fs::exists(dir / f)) return dir / f;
  }
  throw Error(ErrorCode::kNotFound, "no Wan2.1_VAE.pth / Wan2.2_VAE.pth in " + dir.string());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const bool cuda = torch_cuda_available();
    if (!cuda && !a.tiny) {
      std::printf("skip: bench_streamed_job needs LibTorch on CUDA and a GPU (or --tiny for the CPU smoke run)\n");
      return 0;
    }
    const fs::path dir = ensure_model(a);
    const at::Device device = cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    const model::RunDtype run = cuda ? model::RunDtype::kBFloat16 : model::RunDtype::kFloat32;
    const int gpu = cuda ? 0 : -1;
    nlohmann::json out = {{"bench", "bench_streamed_job"}, {"case", "c"}, {"model", dir.string()},
                          {"device", cuda ? "cuda" : "cpu"}, {"run_dtype", model::run_dtype_name(run)},
                          {"width", a.width}, {"height", a.height}, {"frames", a.frames}, {"steps", a.steps},
                          {"seed", a.seed}};
    std::uint64_t context_bytes = 0;
    if (cuda) {
      at::ones({1}, at::TensorOptions().device(device)).sum().item<float>();
      const DeviceMemInfo m0 = device_mem_info(0);
      context_bytes = m0.total_bytes - m0.free_bytes;
      out["device_total_bytes"] = m0.total_bytes;
      out["context_bytes"] = context_bytes;
    }
    PeakSampler sampler(cuda);
    const auto t_all = Clock::now();

    // ---- sizes: experts, slots, host tier
    const fs::path hi = dir / "high_noise_model", lo = dir / "low_noise_model";
    const ExpertBytes eb = expert_bytes(hi, model::gemm_dtype(run));
    const std::uint64_t nonblock = 2 * eb.nonblock;
    const model::WanConfig wcfg = model::CheckpointDir(hi).config();
    const std::int64_t lat_f = (a.frames - 1) / 4 + 1;
    const std::int64_t tokens = lat_f * (a.height / 16) * (a.width / 16);
    std::uint64_t slots = 0, budget = 0;
    if (cuda) {
      budget = a.budget;
      DitGeometry g;
      g.tokens = tokens;
      g.dim = wcfg.dim;
      g.ffn_dim = wcfg.ffn_dim;
      g.text_len = wcfg.text_len;
      const std::uint64_t act = dit_activation_bytes(g);
      const std::uint64_t fixed = context_bytes + nonblock + act + act / 8 + (256ull << 20);
      if (fixed + 3 * eb.max_block > budget) {
        throw Error(ErrorCode::kConfig, "budget " + format_bytes(budget) + " cannot hold context " +
                                            format_bytes(context_bytes) + " + non-block " + format_bytes(nonblock) +
                                            " + activations " + format_bytes(act + act / 8) + " + three blocks of " +
                                            format_bytes(eb.max_block));
      }
      slots = (budget - fixed) / (2ull << 20) * (2ull << 20);
      out["activation_estimate_bytes"] = act;
    } else {
      slots = 3 * eb.max_block + (1ull << 20);  // CPU smoke: three block slots, streams for real
    }
    // Host: the budget less what the process holds outside the pool (LibTorch, latents, VAE).
    // Tiny: one expert + one block (+ alignment / T5 staging slack): less than both experts,
    // so the host window really streams the second expert in across the switch.
    const std::uint64_t host_tier = a.tiny ? (eb.blocks + eb.max_block + (256ull << 10) + 4095) / 4096 * 4096
                                           : a.host_budget - a.host_reserve;
    const std::uint64_t host_window = a.host_window > 0 ? a.host_window : eb.blocks;
    out["expert_block_bytes"] = eb.blocks;
    out["max_block_bytes"] = eb.max_block;
    out["nonblock_bytes_estimate"] = nonblock;
    out["budget_bytes"] = budget;
    out["host_budget_bytes"] = a.tiny ? host_tier : a.host_budget;
    out["host_tier_bytes"] = host_tier;
    out["host_window_bytes"] = host_window;
    out["slot_bytes"] = slots;
    nlohmann::json pj = {{"host", {{"bytes", host_tier}, {"pinned", cuda}}},
                         {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", slots},
                                                             {"backend", cuda ? "cuda" : "cpu"}}})},
                         {"io", {{"engine", cuda ? "auto" : "psync"}}}};
    memory::PoolDeps deps;
#ifdef WAND_HAVE_CUDA
    if (cuda) deps = memory::cuda::pool_deps();
#endif
    nlohmann::json c;
    double t5_s = 0, decode_s = 0;
    at::Tensor context_for_a, latent_for_a;
    {
      auto t0 = Clock::now();
      memory::MemoryPool pool(memory::PoolConfig::from_json(pj), deps);
      c["pool_create_s"] = since(t0);

      // ---- the job through the daemon's own job path (sched::WanPipeline, Note [One job
      // path]): umT5 streamed through the pool, the experts streamed under the budget, the
      // VAE phases in what the budget leaves (Note [VAE room]). Only the tier sizes are the
      // bench's; the wiring is the product's.
      sched::WanStreamContext sc;
      sc.pool = &pool;
      sc.device_tier = pool.device_tier(0);
      sc.cuda_device = gpu;
      sc.run_dtype = model::run_dtype_name(run);
      sc.pack_dir = a.spool;
      sc.name = "bench";
      sc.budget.budget_bytes = budget;
      sc.budget.context_bytes = context_bytes;
      sc.budget.slot_bytes = slots;
      sc.host_window_bytes = host_window;
      model::GeneratorOptions go;
      go.on_phase = [&sampler](const char* p) {
        const std::string ph(p);
        sampler.phase(ph == "steps" ? PeakSampler::kSteps : ph == "decode" ? PeakSampler::kDecode : PeakSampler::kT5);
      };
      t0 = Clock::now();
      fs::create_directories(a.spool);
      sched::WanPipeline pipe(dir, sc, go);
      c["pipeline_open_s"] = since(t0);
      sched::JobSpec spec;
      spec.task = "t2v";
      spec.prompt = a.prompt;
      spec.width = a.width;
      spec.height = a.height;
      spec.frames = a.frames;
      spec.steps = a.steps;
      spec.seed = a.seed;
      sched::CancelToken token;

      // ---- the job: prepare (T5) -> steps -> decode
      const auto t_job = Clock::now();
      sampler.phase(PeakSampler::kT5);
      t0 = Clock::now();
      std::unique_ptr<sched::JobState> job = pipe.prepare(spec, token);
      synchronize_device(gpu);
      const double prepare_s = since(t0);
      const model::GenState& st = sched::WanPipeline::gen_state(*job);
      const nlohmann::json t5_stats = pipe.t5_stats();
      t5_s = t5_stats.value("encode_s", 0.0);
      const std::vector<int> eos = pipe.generator().expert_of_step(st);
      reset_caching_allocator_peak(gpu < 0 ? 0 : gpu);
      std::vector<double> step_s, step_wait_s;
      std::vector<std::uint64_t> step_host_in;
      double wait_prev = 0;
      std::uint64_t host_prev = 0;
      const auto t_steps = Clock::now();
      while (pipe.completed_steps(*job) < pipe.total_steps(*job)) {
        t0 = Clock::now();
        pipe.step(*job, token);
        synchronize_device(gpu);
        step_s.push_back(since(t0));
        const nlohmann::json js = pipe.stream_stats().at("job");
        const double w = js.value("wait_s", 0.0);
        const std::uint64_t h = js.value("host_bytes_in", std::uint64_t{0});
        step_wait_s.push_back(w - wait_prev);
        step_host_in.push_back(h - host_prev);
        wait_prev = w;
        host_prev = h;
        if (!a.json.empty()) {  // partial results survive a run cut off by a time limit
          nlohmann::json partial = out;
          partial["partial"] = true;
          partial["c"] = {{"step_s", step_s}, {"step_wait_s", step_wait_s}, {"step_disk_to_host_bytes", step_host_in},
                          {"expert_of_step", eos}, {"prepare_s", prepare_s}, {"t5_s", t5_s},
                          {"peak_device_bytes", sampler.peak_all()}};
          std::ofstream(a.json) << partial.dump(1) << "\n";
        }
        const int k = pipe.completed_steps(*job) - 1;
        std::printf("(c) step %d expert %d %.3f s wait %.3f s disk->host %.2f GB\n", k,
                    eos[static_cast<std::size_t>(k)], step_s.back(), step_wait_s.back(),
                    static_cast<double>(step_host_in.back()) / 1e9);
        std::fflush(stdout);
      }
      const double steps_s = since(t_steps);
      const std::uint64_t alloc_peak_steps = caching_allocator_peak_reserved(gpu < 0 ? 0 : gpu);
      const nlohmann::json sd_stats = pipe.stream_stats();
      context_for_a = st.context;
      latent_for_a = st.latent;

      t0 = Clock::now();
      const std::int64_t decode_budget = pipe.vae_room();  // what decode() will ask (Note [VAE room])
      const sched::Video video = pipe.decode(*job, token);
      synchronize_device(gpu);
      decode_s = since(t0);
      const double job_s = since(t_job);
      const int switch_step = [&] {
        for (std::size_t k = 1; k < eos.size(); ++k) {
          if (eos[k] != eos[k - 1]) return static_cast<int>(k);
        }
        return -1;
      }();
      const std::uint64_t t5_bytes = t5_stats.value("bytes_requested", std::uint64_t{0}) +
                                     t5_stats.value("embed_bytes_read", std::uint64_t{0});
      const std::uint64_t dit_disk = sd_stats.at("total").value("host_bytes_in", std::uint64_t{0});
      c["job_s"] = job_s;
      c["prepare_s"] = prepare_s;
      c["t5_s"] = t5_s;
      c["steps_s"] = steps_s;
      c["step_s"] = step_s;
      c["step_wait_s"] = step_wait_s;
      c["step_disk_to_host_bytes"] = step_host_in;
      c["expert_of_step"] = eos;
      c["switch_step"] = switch_step;
      c["decode_s"] = decode_s;
      c["decode_budget_bytes"] = decode_budget;
      c["video_shape"] = {3, video.frames, video.height, video.width};
      c["bytes_from_disk"] = {{"t5", t5_bytes}, {"dit", dit_disk}, {"total", t5_bytes + dit_disk}};
      c["peak_device_bytes"] = sampler.peak_all();
      c["peak_device_bytes_by_phase"] = {{"t5", sampler.peak(PeakSampler::kT5)},
                                         {"steps", sampler.peak(PeakSampler::kSteps)},
                                         {"decode", sampler.peak(PeakSampler::kDecode)}};
      c["allocator_peak_reserved_bytes_steps"] = alloc_peak_steps;
      c["allocator_peak_reserved_bytes"] = caching_allocator_peak_reserved(gpu < 0 ? 0 : gpu);
      c["host_peak_rss_bytes"] = bench::proc_status_bytes("VmHWM:");
      c["host_rss_bytes"] = bench::proc_status_bytes("VmRSS:");
      c["streamed_dit"] = sd_stats;
      c["t5"] = t5_stats;
      c["pool"] = pool.status_json();
      if (a.disk_gbps > 0) {
        c["disk_floor_s_at_measured_bw"] = static_cast<double>(t5_bytes + dit_disk) / (a.disk_gbps * 1e9);
        c["disk_gbps_measured"] = a.disk_gbps;
      }
      std::printf("(c) job %.1f s: prepare %.1f (t5 %.1f), %d steps %.1f s, decode %.1f s; peak %.2f GiB; "
                  "disk %.1f GB; VmHWM %.1f GiB\n",
                  job_s, prepare_s, t5_s, a.steps, steps_s, decode_s,
                  static_cast<double>(sampler.peak_all()) / (1ull << 30),
                  static_cast<double>(t5_bytes + dit_disk) / 1e9,
                  static_cast<double>(bench::proc_status_bytes("VmHWM:")) / (1ull << 30));
      std::fflush(stdout);
    }
    out["c"] = c;
    // Planner v1's prediction for the same job and budgets (null: no planner in this build).
    // (CPU smoke: a nominal 2 GiB card, so the planner's code path runs on the tiny model.)
    out["planner"] = bench::planner_prediction(dir, a.width, a.height, a.frames, a.steps,
                                               cuda ? a.budget : (2ull << 30), a.tiny ? host_tier : a.host_budget,
                                               cuda ? slots : 0);  // the run's tier (Note [Fixed tier])

    // ---- (a): one expert resident, CFG steps on the job's own shapes, same process.
    if (!a.skip_a) {
      empty_caching_allocator();
      cap_caching_allocator(gpu < 0 ? 0 : gpu, std::numeric_limits<std::uint64_t>::max());  // uncapped
      sampler.phase(PeakSampler::kA);
      auto t0 = Clock::now();
      model::WanDit dit = model::WanDit::load(model::CheckpointDir(hi), run, device, true);
      synchronize_device(gpu);
      const double load_s = since(t0);
      at::manual_seed(3);
      const at::Tensor x = at::randn(latent_for_a.sizes()).to(device);
      const at::Tensor t = at::full({1}, 900, at::kLong).to(device);
      const at::Tensor ctx = context_for_a.to(device);
      dit.forward_cfg(x, t, ctx, ctx, tokens);  // warm-up
      synchronize_device(gpu);
      double best = 1e30, fwd = 1e30;
      for (int r = 0; r < 2; ++r) {
        t0 = Clock::now();
        dit.forward_cfg(x, t, ctx, ctx, tokens);
        synchronize_device(gpu);
        best = std::min(best, since(t0));
        t0 = Clock::now();
        dit.forward(x, t, ctx, tokens);
        synchronize_device(gpu);
        fwd = std::min(fwd, since(t0));
      }
      const double a_job = t5_s + a.steps * best + decode_s;
      out["a"] = {{"load_s", load_s},
                  {"cfg_step_s", best},
                  {"forward_s", fwd},
                  {"peak_device_bytes", sampler.peak(PeakSampler::kA)},
                  {"job_s", a_job},
                  {"job_formula", "t5_s(c) + steps x cfg_step_s + decode_s(c)"}};
      const double c_job = out["c"]["job_s"].get<double>();
      out["c_over_a_job"] = c_job / a_job;
      std::printf("(a) resident cfg step %.3f s, forward %.3f s -> job %.1f s; (c)/(a) = %.3f\n", best, fwd, a_job,
                  c_job / a_job);
    }
    sampler.stop();
    out["wall_s"] = since(t_all);
    out["host_peak_rss_bytes"] = bench::proc_status_bytes("VmHWM:");
    std::printf("%s\n", out.dump(1).c_str());
    if (!a.json.empty()) std::ofstream(a.json) << out.dump(1) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_streamed_job: %s\n", e.what());
    return 1;
  }
}
