// DaemonConfig: wand's configuration, from a JSON file (comments allowed: // and
// /* */, and any key starting with "_" is ignored, e.g. "_comment"), overridden by
// command-line flags. Validated at start: every error names the file and field.
//
//   DaemonConfig c = load_config_file("/etc/wand/wand.json");   // throws Error(kConfig)
//   DaemonConfig d = parse_config(json, "<flags>");
//   nlohmann::json j = config_to_json(c);                        // effective config
//
// The "memory" section is memory::PoolConfig's (validated by PoolConfig::from_json)
// and passed through unchanged to the pool the daemon builds at start. The "executor"
// section tunes streamed Wan jobs (used when the pool has a device tier):
//   "executor": {"device_budget": "24GiB", "context_bytes": "600MiB", "activation_bytes": 0,
//                "window": 0, "host_window": 0, "chunk_tokens": -1, "pack_dir": "",
//                "run_dtype": "", "parallel": "auto"}
// (docs/operations.md, "Streaming" and "Several cards"). "parallel" is how one job may use
// several cards (Note [Daemon card groups], daemon.cpp): "auto" (planner v2's latency choice
// for a job alone on >= 2 idle cards), "off" (job-parallel only), or a strategy name
// ("cfg-parallel", "ulysses-2", "cfg2xulysses-2": scheduler/multigpu/parallel_strategy.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace wand::daemon {

// Streamed execution settings (scheduler/exec StreamedDitOptions; sizes in bytes).
struct ExecutorConfig {
  std::uint64_t device_budget = 0;     // everything on the card; 0: no whole-card check, no chunking
  std::uint64_t context_bytes = 0;     // CUDA context + kernels (measured by the operator)
  std::uint64_t activation_bytes = 0;  // 0: device_budget - context - slots - non-block weights
  std::uint64_t window = 0;            // device prefetch window; 0: from the device tier
  std::uint64_t host_window = 0;       // 0: both experts stay in host memory
  std::int64_t chunk_tokens = -1;      // -1: from the budget; 0: never chunk
  std::string pack_dir;                // "": the disk tier's dir, else <state_dir>/pack
  std::string run_dtype;               // "" | fp32 | bf16 | fp16 ("": bf16 on CUDA, fp32 on the CPU)
  std::string parallel = "auto";       // "auto" | "off" | a strategy name of >= 2 cards ("cfg-parallel", ...)
  bool operator==(const ExecutorConfig& o) const {
    return device_budget == o.device_budget && context_bytes == o.context_bytes &&
           activation_bytes == o.activation_bytes && window == o.window && host_window == o.host_window &&
           chunk_tokens == o.chunk_tokens && pack_dir == o.pack_dir && run_dtype == o.run_dtype &&
           parallel == o.parallel;
  }
  bool operator!=(const ExecutorConfig& o) const { return !(*this == o); }
};

struct DaemonConfig {
  std::string socket_path = "/run/wand/wand.sock";
  std::string socket_group;                 // "" = the daemon's own group
  unsigned socket_mode = 0660;
  std::string state_dir = "/var/lib/wand";
  std::string admin_group = "wand-admin";   // members see and cancel every job; "" = none
  std::uint32_t max_message_bytes = 8u << 20;
  int max_clients = 512;
  std::string log_level = "info";
  std::map<std::string, std::string> models;  // name -> model directory
  nlohmann::json memory;                      // memory::PoolConfig JSON (null: not configured)
  ExecutorConfig executor;
};

nlohmann::json executor_to_json(const ExecutorConfig& e);

DaemonConfig parse_config(const nlohmann::json& j, const std::string& source);
DaemonConfig load_config_file(const std::filesystem::path& file);
nlohmann::json config_to_json(const DaemonConfig& c);

}  // namespace wand::daemon
