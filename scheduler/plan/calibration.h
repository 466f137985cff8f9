// Calibration: the measured rates the planner's cost model divides by, each with where it
// came from. Defaults are the numbers measured on one H100 (bench/results/*.md); a JSON
// file (`<state_dir>/calibration.json`, or any path) overrides any subset of them.
//
//   Calibration c = Calibration::defaults();              // every field "source": "default"
//   Calibration f = Calibration::from_file("/var/lib/wand/calibration.json");  // throws kConfig
//   DeviceRates r = f.rates_for(/*device index=*/1);      // per-card override or the default
//   nlohmann::json j = f.to_json();                       // {"gemm_tflops": {"value", "source", "ref"}, ...}
//
// File format (every field optional; a number, or {"value": x, "source": "...", "ref": "..."}):
//   {"gemm_tflops": 800, "attention_tflops": 560, "hbm_gbps": 1440, "pcie_gbps": 25,
//    "disk_gbps": 3.2, "host_mem_gbps": 90, "interconnect_gbps": 20,
//    "context_bytes": "0.5GiB",
//    "devices": [{"index": 1, "gemm_tflops": 160, "pcie_gbps": 12}]}
// Values from a file get "source": "file <path>" unless the entry names its own source.
//
// Note [Calibration defaults]: where each default comes from (the "ref" of each field):
// - gemm_tflops 825: bench/results/dit-block-h100.md, the PyTorch profile of one A14B block at
//   32,760 tokens spends 23.8 ms in cuBLAS GEMMs for 1.963e13 FLOP (the C++ block runs the same
//   GEMMs).
// - attention_tflops 580: architecture.md, cuDNN SDPA called from C++ on the H100: 602 TFLOP/s at
//   32,760 tokens, 559 at 75,600; the mean.
// - hbm_gbps 1442 x elementwise_passes 14: the elementwise work (norms, modulation, RoPE, gates,
//   casts) modelled as 14 fp32 [S, D] passes at 1442 GB/s, fitted to the measured C++ block with
//   the fused kernels of model/cuda (68.0 ms at 32,760 tokens, 276.6 ms at 75,600; H100,
//   bench/results/gpu-session-h100x2-2026-11-25.md): predicted 68.8 ms (+1.2 %) and 273.0 ms
//   (-1.3 %). Before the fused kernels 40 passes reproduced 79.1 / 305.1 ms.
// - pcie_gbps 53.8: bench/results/memory-h100.md, CudaTier copy_in of a 670 MiB block from pinned
//   memory (raw cudaMemcpyAsync: 55.0).
// - disk_gbps 1.86: memory-h100.md, bench_pipeline disk -> pinned host of a 670 MiB blob, 16 MiB
//   chunks (1.87 / 1.86 in two runs; io_uring 1.4-2.2 by queue depth).
// - context_bytes 0.5 GiB: the CUDA context + LibTorch kernels, the ~0.5 GiB of Note [Device
//   budget] (scheduler/exec/exec_budget.h); bench/exec measures it per run: put that number in
//   the file (or executor.context_bytes in the daemon's config, which the plan service uses).
// - vae_decode_ns_per_pixel_frame 94.2: vae-h100.md, VAE 2.1 fp32 decode tiled to a 16 GiB budget,
//   21 latents -> 1280x720 x 81 frames in 7.03 s. Applied to VAE 2.2 too (not measured there).
// - activation_cap_factor 1.125: the allocator cap over the activation estimate that bench/exec
//   gives the executor (a margin, not a measurement).
// - host_mem_gbps 100 and interconnect_gbps 25 are NOT measured (no multi-GPU machine yet):
//   they carry "measured": false and every plan that uses them says so.
// Plain value type; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::sched::plan {

struct Figure {
  double value = 0.0;
  std::string source = "default";  // "default" | "file <path>" | what the file said
  std::string ref;                  // where the default was measured (or why it was not)
  bool measured = true;             // false: a placeholder nobody measured yet
  nlohmann::json to_json() const;
};

// The rates of one card.
struct DeviceRates {
  Figure gemm_tflops;       // bf16 GEMM, dense
  Figure attention_tflops;  // SDPA (cuDNN), 4 S^2 D FLOP per self-attention
  Figure hbm_gbps;          // effective rate of the elementwise passes
  Figure pcie_gbps;         // pinned host -> device copy of a block
};

struct Calibration {
  DeviceRates device;                       // every card unless overridden
  std::map<int, DeviceRates> per_device;    // by device index (fields not in the file = device's)
  Figure elementwise_passes;                // fp32 [S, D] passes per block forward
  Figure disk_gbps;                         // disk -> pinned host (O_DIRECT, io_uring)
  Figure host_mem_gbps;                     // host DRAM read rate shared by all streaming cards
  Figure interconnect_gbps;                 // per-card all-to-all rate between cards
  Figure context_bytes;                     // CUDA context + kernels per card
  Figure vae_decode_ns_per_pixel_frame;     // VAE decode time per output pixel x frame
  Figure activation_cap_factor;             // allocator cap / activation estimate

  static Calibration defaults();
  // Overrides of the defaults; `where` names the file in errors (Error(kConfig)).
  static Calibration from_json(const nlohmann::json& j, const std::string& where);
  static Calibration from_file(const std::filesystem::path& file);
  DeviceRates rates_for(int device_index) const;
  nlohmann::json to_json() const;
  // The names of the figures used that are placeholders (measured = false).
  std::vector<std::string> unmeasured() const;
};

}  // namespace wand::sched::plan
