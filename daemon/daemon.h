// Daemon: wires configuration, the durable queue, the runner, the socket server,
// signals and systemd together, and runs the io loop.
//
//   DaemonOptions opts;                 // from the command line (daemon/main.cpp)
//   opts.config_file = "/etc/wand/wand.json";
//   opts.flags.socket_path = "/tmp/t/wand.sock";
//   return Daemon(opts).run();          // returns when stopped (SIGTERM, shutdown request)
//
// Signals: SIGTERM/SIGINT = stop accepting, stop the running job at a block
// boundary (it stays queued at its last checkpoint), exit. SIGHUP = reload the
// configuration file (log level, admin group, models, message size; socket, state
// dir, "memory" and "executor" changes need a restart: the pool is built once, at
// start, and never rebuilt under a running job, Note [One pool]).
//
// Note [One pool]: with a "memory" section the daemon builds ONE memory::MemoryPool
// at start (PoolConfig::from_json; CUDA device tiers and pinned host memory when built
// with CUDA, through DaemonOptions::pool_deps). When the pool has a device tier, the
// pipelines that can stream (Wan2.2, registered by the `wand` executable through
// register_pipelines' PipelineServices) run their DiT blocks from it; `tiers` answers
// from pool.status_json() (measured, source "pool") plus LibTorch's caching allocator
// per CUDA device (DaemonOptions::allocator_stats), each tier marked "source": "config" or
// "auto". Without a memory section the pool is sized from the machine (Note [Auto memory],
// auto_memory.h): each visible GPU's budget and tier, the host tier from MemAvailable, the
// spool under state_dir. With "memory": "off": resident pipelines, and `tiers` reports
// nothing measured (source "config").
//
// Note [Daemon slots] (issue 7, job-parallel): with a pool that has device tiers, the
// runner gets one worker per memory.devices[] entry (sched::DeviceSlot: index = the
// entry's index, name "cuda:N" or "cpu:N"), each running its own job concurrently on its
// card, through the pipeline PipelineRegistry::pipeline(model, slot) builds for that card
// (its device tier, its budget). The card's whole budget is the one the planner uses (Note
// [Card budget], config.h: card_budgets()): the card list and the planner's machine are built
// once at start from the resolved memory section (plan_machine, plan_service.h) and handed to
// the pool's cards, `tiers`, `plan`, placement and card groups. With a budget known for every
// card, each job is placed by the planner's predicted peak (sched::plan::PeakPlanner,
// scheduler/plan/placement.h: plan::predicted_peak_bytes with the card's fixed tier, on the
// smallest card that can run it; cached per model + size + frames; Note [Job placement],
// job_runner.h): a job too big for every card fails with the
// planner's message and every card's budget, the others run. A card without a budget has
// no whole-card number to check against (the tier bytes are only the block slots), so its
// slots are unlimited and every job fits it. Without device tiers (or with "memory":
// "off"): one worker, resident pipelines, as before issue 7.
// With 2+ cards, executor.parallel decides whether a job taken runs on several of the idle
// cards at once (Note [Daemon card groups], group_chooser.h; Note [Card groups],
// job_runner.h): "auto" (default) = planner v2's latency choice for a job alone, "off" =
// one card per job, a strategy name = that strategy whenever enough cards are idle. The
// group's pipeline is PipelineRegistry::pipeline(model, group) (the `wand` executable
// registers sched::register_wan_pipeline with wan_stream_context(services), pipelines.h: its
// make_group has one WanStreamRank per member card).
// Owns everything it creates; run() from one thread.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/auto_memory.h"
#include "daemon/config.h"
#include "daemon/resource_provider.h"
#include "memory/memory_pool.h"
#include "scheduler/pipeline_registry.h"

namespace wand::daemon {

// One card of the daemon's pool: a memory.devices[] entry and its device tier
// (Note [Daemon slots]). The job runner has one worker (a sched::DeviceSlot of the same
// index, name and placement budget) per card.
struct DeviceService {
  int index = 0;                       // memory.devices[].index (the CUDA ordinal on CUDA)
  int tier = -1;                       // its pool tier
  int cuda_device = -1;                // its CUDA ordinal; -1: a CPU device tier
  std::string name;                    // "cuda:N" | "cpu:N"
  std::uint64_t budget_bytes = 0;      // whole-card budget; 0: no executor.device_budget
};

// What a pipeline factory needs to stream from the daemon's pool (LibTorch-free).
struct PipelineServices {
  memory::MemoryPool* pool = nullptr;  // the daemon's pool; null: no memory section
  int device_tier = -1;                // the first device tier; -1: none (run resident)
  int cuda_device = -1;                // its CUDA ordinal; -1: a CPU device tier
  ExecutorConfig executor;             // the "executor" section
  std::string pack_dir;                // resolved (never empty when pool is set)
  std::vector<DeviceService> devices;  // every card, memory.devices[] order (devices[0]: the first)
  // Model directory (lexically normal) -> its weights_dtype when not "auto" (config models.<name>).
  std::map<std::string, std::string> weights_by_dir;
  bool streaming() const { return pool != nullptr && device_tier >= 0; }
  // The card of a runner slot index (nullptr: none, e.g. the default slot without devices).
  const DeviceService* device(int index) const {
    for (const auto& d : devices) {
      if (d.index == index) return &d;
    }
    return nullptr;
  }
};


// Command-line overrides of the configuration file.
struct ConfigFlags {
  std::optional<std::string> socket_path;
  std::optional<std::string> socket_group;
  std::optional<unsigned> socket_mode;
  std::optional<std::string> state_dir;
  std::optional<std::string> admin_group;
  std::optional<std::string> log_level;
  std::map<std::string, std::string> models;  // --model NAME=DIR
};

struct DaemonOptions {
  std::optional<std::filesystem::path> config_file;
  ConfigFlags flags;
  // Adds the pipeline factories (default: register_pipelines, the built-in fake).
  // The `wand` executable adds the Wan2.2 one (scheduler/wan) here, streamed when
  // services.streaming(). Called once, after the pool is built.
  std::function<void(sched::PipelineRegistry&, const PipelineServices& services)> register_pipelines;
  // The pool's host regions and device tiers (default: memory::cuda::pool_deps() when
  // built with CUDA, else the CPU ones).
  std::function<memory::PoolDeps()> pool_deps;
  // LibTorch's caching allocator per CUDA device for `tiers` (unset: not reported).
  std::function<AllocatorStats(int cuda_device)> allocator_stats;
  // The GPUs Note [Auto memory] sizes the pool for (unset: the visible CUDA devices when built
  // with CUDA, else none) and how they were found (for the messages; "" = "test").
  GpuProbe gpu_probe;
  std::string gpu_source;
};

// The file (or defaults) with the flags applied. Throws Error(kConfig).
DaemonConfig effective_config(const DaemonOptions& options);

// Note [Check config]: everything the daemon refuses at start that can be checked without
// taking anything (no socket, state directory, pool memory or model load): the merged
// configuration (effective_config, with the memory and executor sections), and every model
// directory existing and recognised by one of options.register_pipelines' factories (the
// registry's own check, so the error text is the daemon's, e.g. "model directory /srv/x
// does not exist"). Daemon::run() starts with it and `wand --check-config` runs it alone,
// so a file the check passes is one the daemon starts with (exit 2 for both otherwise).
// Throws Error(kConfig).
DaemonConfig checked_config(const DaemonOptions& options);

// What `wand --check-config` reports: the effective configuration with its memory section
// resolved the way the daemon would at start (after checked_config's checks) (Note [Auto memory]: probing this machine), the
// decisions taken, and config_warnings() of the result. Throws Error(kConfig) like
// effective_config.
struct ConfigCheck {
  DaemonConfig config;                // memory: the resolved section (null with "off")
  std::vector<std::string> memory_lines;
  std::vector<std::string> warnings;
  nlohmann::json to_json() const;     // config_to_json + "_memory_resolved" (ignored on reading)
};
ConfigCheck check_config(const DaemonOptions& options);

class Daemon {
 public:
  explicit Daemon(DaemonOptions options);
  ~Daemon();
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wand::daemon
