// auto_memory: the memory section a daemon without one gets, sized from the machine, and the
// card budgets of a configured section filled in from the cards the daemon can see.
//
//   MachineFacts m = probe_machine(cfg, gpu_probe);        // GPUs, MemAvailable, spool's free space
//   ResolvedMemory r = resolve_memory(cfg, m, model_needs(cfg));
//   cfg.set_memory(r.memory);                               // what the pool is built from (validated)
//   for (const auto& line : r.lines) log(line);             // every decision, with its numbers
//
// Note [Auto memory]: without a `memory` section (or with "memory": "auto") wand sizes the
// pool at start:
// - each visible GPU (CUDA builds: cudaGetDeviceProperties / cudaMemGetInfo in
//   gpu_probe_cuda.cpp; a CPU build sees none) gets a card budget of its total memory less
//   kAutoDeviceHeadroom (1 GiB: the display, the driver, other processes), and a device tier
//   of budget - context - kAutoActivationReserve (11 GiB: what an A14B CFG step at 1280x720
//   needs beside the tier, the planner's 9.8 GiB in 16,384-token chunks + 0.87 GiB of non-block
//   weights of both experts), at least kAutoMinTier, and at most the blocks of the largest
//   configured Wan model (a tier bigger than every block it could hold is memory taken from
//   the activations for nothing). Worked example, a 24 GB card (23.99 GiB): budget 22.99 GiB,
//   tier 22.99 - 0.5 - 11 = 11.49 GiB; i2v-A14B 1280x720x81 then plans at 0.5 + 0.87 + 9.8 +
//   11.49 = 22.6 GiB. An 80 GB H100 (79.2 GiB): budget 78.2 GiB, tier min(66.7, 52.4 GiB of
//   A14B blocks) = 52.4 GiB: every block stays on the card.
// - the host tier: /proc/meminfo MemAvailable less max(kAutoHostHeadroomMin, a quarter of it),
//   at most what the configured models need in host memory (their DiT blocks in the run dtype
//   and umT5) plus kAutoHostSlack; page-locked only when there is a GPU to copy to.
// - the spool: <state_dir>/spool (created when missing), min(kAutoSpoolMax, a quarter of the
//   free space of its filesystem, statvfs). It holds what spills from the host tier only (the
//   weights are read from the release files and pack_dir), so it stays small; below
//   kAutoMinSpool there is none.
// A card too small for kAutoMinTier + context + kMinActivationRoom gets no tier (said), and
// without a configured Wan model no card gets one (nothing would stream: the fake test
// models run on the CPU, one worker, as without a pool).
// With a configured section, a CUDA card whose budget is not configured (Note [Card budget],
// config.h) gets its total less kAutoDeviceHeadroom when the daemon sees it.
// `wand --check-config` prints the result and these lines; `wanctl tiers --json` marks each
// tier "source": "auto" or "config". Changes need a restart (the pool is built once).
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/config.h"

namespace wand::daemon {

constexpr std::uint64_t kAutoDeviceHeadroom = 1ull << 30;
constexpr std::uint64_t kAutoActivationReserve = 11ull << 30;
constexpr std::uint64_t kAutoMinTier = 2ull << 30;
constexpr std::uint64_t kAutoHostHeadroomMin = 8ull << 30;
constexpr std::uint64_t kAutoHostSlack = 256ull << 20;
constexpr std::uint64_t kAutoSpoolMax = 2ull << 30;
constexpr std::uint64_t kAutoMinSpool = 64ull << 20;

struct GpuInfo {
  int index = 0;                 // CUDA ordinal (after CUDA_VISIBLE_DEVICES)
  std::uint64_t total_bytes = 0;
  std::uint64_t free_bytes = 0;  // at the probe (0: not measured)
  std::string name;
};
using GpuProbe = std::function<std::vector<GpuInfo>()>;

struct MachineFacts {
  std::vector<GpuInfo> gpus;
  std::string gpu_source;              // "cuda" | "none (...)": how the GPUs were looked for
  std::uint64_t mem_available_bytes = 0;  // 0: unknown
  std::uint64_t spool_free_bytes = 0;     // free space where the spool goes; 0: unknown
};

// What a configured Wan model needs from the pool (read from its headers, never its weights).
struct ModelNeed {
  std::string name;
  std::uint64_t blocks_bytes = 0;  // every DiT block of every expert, run dtype
  std::uint64_t max_block_bytes = 0;
  std::uint64_t host_bytes = 0;    // DiT (run dtype) + umT5
};

struct ResolvedMemory {
  std::string mode;           // "config" | "auto" | "off"
  nlohmann::json memory;      // the section the pool is built from (null: no pool)
  std::vector<std::string> lines;  // the decisions, one per tier or filled budget
};

// /proc/meminfo's MemAvailable in bytes; 0 when unreadable.
std::uint64_t mem_available_bytes(const std::filesystem::path& meminfo = "/proc/meminfo");
// Bytes an unprivileged writer may still use on the filesystem of `dir` (statvfs f_bavail x
// f_frsize), asking the nearest existing parent when `dir` does not exist yet; 0 when unknown.
std::uint64_t filesystem_free_bytes(const std::filesystem::path& dir);
// The spool directory of the auto section.
std::filesystem::path auto_spool_dir(const DaemonConfig& cfg);
// GPUs from `gpus` (unset: none), MemAvailable, the spool's free space.
MachineFacts probe_machine(const DaemonConfig& cfg, const GpuProbe& gpus, const std::string& gpu_source);
// The configured models that are Wan release layouts (others, e.g. the fake, are skipped).
std::vector<ModelNeed> model_needs(const DaemonConfig& cfg);
// Note [Auto memory]. Pure: the same facts give the same section.
ResolvedMemory resolve_memory(const DaemonConfig& cfg, const MachineFacts& facts, const std::vector<ModelNeed>& models);

#ifdef WAND_DAEMON_CUDA
// The visible CUDA devices (gpu_probe_cuda.cpp); empty when the runtime finds none.
std::vector<GpuInfo> cuda_visible_gpus();
#endif

}  // namespace wand::daemon
