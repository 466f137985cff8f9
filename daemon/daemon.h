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
// configuration file (log level, admin group, models, message size, memory
// budgets; socket and state dir changes need a restart).
// Owns everything it creates; run() from one thread.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "daemon/config.h"
#include "scheduler/pipeline_registry.h"

namespace wand::daemon {

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
  // The `wand` executable adds the Wan2.2 one (scheduler/wan) here.
  std::function<void(sched::PipelineRegistry&)> register_pipelines;
};

// The file (or defaults) with the flags applied. Throws Error(kConfig).
DaemonConfig effective_config(const DaemonOptions& options);

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
