// wand: the daemon. Thin main: flags -> DaemonOptions -> Daemon::run().
//
//   wand [--config FILE] [--socket PATH] [--state-dir DIR] [--model NAME=DIR]...
//        [--socket-group G] [--socket-mode 0660] [--admin-group G] [--log-level L]
//
// Exit: 0 after a clean stop, 1 on a runtime error, 2 on a usage or configuration error.
#include <cstdio>
#include <cstring>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/pipelines.h"
#include "proto/version.h"
#ifdef WAND_HAVE_WAN_PIPELINE
#include "scheduler/exec/device_runtime.h"
#include "scheduler/wan/wan_pipeline.h"
#endif

namespace {

constexpr const char* kUsage =
    "usage: wand [--config FILE] [--socket PATH] [--state-dir DIR] [--model NAME=DIR]...\n"
    "            [--socket-group GROUP] [--socket-mode MODE] [--admin-group GROUP]\n"
    "            [--log-level trace|debug|info|warn|error|off] [--check-config] [--version]\n"
    "Flags override the configuration file; with no file the built-in defaults apply.\n"
    "--check-config validates the configuration, prints the effective one (with the memory\n"
    "section sized from this machine when the file has none), warns about card budgets, and exits.\n";

}  // namespace

int main(int argc, char** argv) {
  wand::daemon::DaemonOptions o;
  o.register_pipelines = [](wand::sched::PipelineRegistry& registry, const wand::daemon::PipelineServices& s) {
#ifdef WAND_HAVE_WAN_PIPELINE
    // Wan2.2 release-layout dirs: streamed through the daemon's pool and cards when it has a
    // device tier (Note [One pool], daemon.h), else resident.
    if (s.streaming()) {
      wand::sched::register_wan_pipeline(registry, wand::daemon::wan_stream_context(s));
    } else {
      wand::sched::register_wan_pipeline(registry);
    }
#else
    (void)s;
#endif
    wand::daemon::register_pipelines(registry);  // wand-fake-model.json dirs
  };
#ifdef WAND_HAVE_WAN_PIPELINE
  // A LibTorch without CUDA cannot run on CUDA device tiers: keep the pool on the CPU.
  if (!wand::sched::exec::torch_cuda_available()) {
    o.pool_deps = [] { return wand::memory::PoolDeps{}; };
    // ... and the auto memory section sizes no CUDA card (Note [Auto memory]).
    o.gpu_probe = [] { return std::vector<wand::daemon::GpuInfo>{}; };
    o.gpu_source = "none: LibTorch without CUDA";
  }
  o.allocator_stats = [](int device) {
    wand::daemon::AllocatorStats a;
    a.reserved_bytes = wand::sched::exec::caching_allocator_reserved(device);
    a.peak_reserved_bytes = wand::sched::exec::caching_allocator_peak_reserved(device);
    return a;
  };
#endif
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "wand: %s needs a value\n%s", name, kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("wand %s (protocol %d)\n", wand::proto::wand_version(), wand::proto::kProtocolVersion);
      return 0;
    } else if (a == "--config") {
      o.config_file = value("--config");
    } else if (a == "--socket") {
      o.flags.socket_path = value("--socket");
    } else if (a == "--state-dir") {
      o.flags.state_dir = value("--state-dir");
    } else if (a == "--socket-group") {
      o.flags.socket_group = value("--socket-group");
    } else if (a == "--socket-mode") {
      std::string m = value("--socket-mode");
      char* end = nullptr;
      unsigned long mode = std::strtoul(m.c_str(), &end, 8);
      if (m.empty() || *end || mode > 0777) {
        std::fprintf(stderr, "wand: --socket-mode: '%s' is not an octal mode\n", m.c_str());
        return 2;
      }
      o.flags.socket_mode = static_cast<unsigned>(mode);
    } else if (a == "--admin-group") {
      o.flags.admin_group = value("--admin-group");
    } else if (a == "--log-level") {
      o.flags.log_level = value("--log-level");
    } else if (a == "--model") {
      std::string m = value("--model");
      auto eq = m.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
        std::fprintf(stderr, "wand: --model expects NAME=DIR, got '%s'\n", m.c_str());
        return 2;
      }
      o.flags.models[m.substr(0, eq)] = m.substr(eq + 1);
    } else if (a == "--check-config") {
      check_only = true;
    } else {
      std::fprintf(stderr, "wand: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  try {
    if (check_only) {
      // Note [Check config] (daemon.h): the checks the daemon makes at start, same errors; then
      // the memory section the daemon would run with (Note [Auto memory]), what it decided
      // and the warnings (Note [Card budget]) on stderr.
      const wand::daemon::ConfigCheck check = wand::daemon::check_config(o);
      std::printf("%s\n", check.to_json().dump(2).c_str());
      for (const auto& line : check.memory_lines) {
        std::fprintf(stderr, "wand: memory %s: %s\n", check.config.memory_mode.c_str(), line.c_str());
      }
      for (const auto& w : check.warnings) std::fprintf(stderr, "wand: warning: %s\n", w.c_str());
      return 0;
    }
    return wand::daemon::Daemon(o).run();
  } catch (const wand::Error& e) {
    std::fprintf(stderr, "wand: %s\n", e.what());
    return e.code() == wand::ErrorCode::kConfig ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wand: %s\n", e.what());
    return 1;
  }
}
