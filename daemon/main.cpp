// wand: the daemon. Thin main: flags -> DaemonOptions -> Daemon::run().
//
//   wand [--config FILE] [--socket PATH] [--state-dir DIR] [--model NAME=DIR]...
//        [--socket-group G] [--socket-mode 0660] [--admin-group G] [--log-level L]
//
// Exit: 0 after a clean stop, 1 on a runtime error, 2 on a usage or configuration error.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/pipelines.h"
#include "proto/version.h"
#ifdef WAND_HAVE_WAN_PIPELINE
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/store_cache.h"
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
    // Wan2.2 release-layout dirs: streamed through the daemon's pool when it has a
    // device tier (Note [One pool], daemon.h), else resident.
    if (s.streaming()) {
      wand::sched::WanStreamContext c;
      c.pool = s.pool;
      c.device_tier = s.device_tier;
      c.cuda_device = s.cuda_device;
      c.run_dtype = s.executor.run_dtype;
      c.pack_dir = s.pack_dir;
      c.name = "wan";
      c.budget.budget_bytes = s.executor.device_budget;
      c.budget.context_bytes = s.executor.context_bytes;
      c.budget.activation_bytes = s.executor.activation_bytes;
      c.window_bytes = s.executor.window;
      c.host_window_bytes = s.executor.host_window;
      c.chunk_tokens = s.executor.chunk_tokens;
      // Note [Daemon host copy]: every pipeline of a model (one per card, one per card group)
      // takes its weight stores from one StoreCache, so the pool's host tier holds ONE pinned
      // copy of each block whatever the number of cards (issue 7 item 1; before, each card's
      // pipeline registered its own blobs: two cards, two copies). With executor.host_window
      // set, a job plans the host tier for its own schedule, which a concurrent job of the same
      // model on another card cannot share (Note [Shared stores and host planning],
      // scheduler/exec/store_cache.h: it would be refused); there each pipeline keeps its own
      // stores, and the host window bounds each.
      if (s.executor.host_window == 0) c.stores = std::make_shared<wand::sched::exec::StoreCache>(*s.pool, "wan.shared");
      // Note [Daemon slots] (daemon.h): one pipeline per (model, card); each streams through
      // its card's device tier with its card's whole budget. The factory of
      // register_wan_pipeline(registry, c) keeps executor.device_budget on every card, so
      // the daemon adds its own (same probe and encoder).
      //
      // Note [Serial pipeline builds]: the cards' workers build their pipelines at once on the
      // first jobs, and a pipeline's construction may repack the release into pack_dir; two
      // builds of one model repacking the same file race on its temporary name (measured: "io:
      // weight store: rename ....bin.tmp -> ....bin: No such file or directory" on 2 CPU
      // cards). So builds are serial (one mutex for all): the first repacks, the others reuse
      // the packed file (one copy on disk for every card).
      auto counter = std::make_shared<int>(0);  // guarded by *mu
      auto mu = std::make_shared<std::mutex>();
      auto make_on = [c, s, counter, mu](const std::filesystem::path& dir, const wand::sched::DeviceSlot& slot) {
        wand::sched::WanStreamContext sc = c;
        std::lock_guard<std::mutex> lock(*mu);  // Note [Serial pipeline builds]
        // Blob names are unique in the pool: one prefix per pipeline made.
        sc.name = c.name + "." + dir.filename().string() + "." + std::to_string((*counter)++);
        if (const wand::daemon::DeviceService* dev = s.device(slot.index)) {
          sc.device_tier = dev->tier;
          sc.cuda_device = dev->cuda_device;
          if (dev->budget_bytes > 0) sc.budget.budget_bytes = dev->budget_bytes;
        }
        return std::unique_ptr<wand::sched::Pipeline>(std::make_unique<wand::sched::WanPipeline>(dir, sc));
      };
      // One job on several cards (Note [Daemon card groups], daemon/group_chooser.h): rank q
      // streams through member q's device tier with that card's budget, as make_on does for
      // one card; the generator (sampler, VAE) runs on the first member's.
      auto make_group = [c, s, counter, mu](const std::filesystem::path& dir, const wand::sched::DeviceGroup& group) {
        wand::sched::WanStreamContext sc = c;
        std::lock_guard<std::mutex> lock(*mu);  // Note [Serial pipeline builds]
        sc.name = c.name + "." + dir.filename().string() + "." + std::to_string((*counter)++);
        sc.ranks.clear();
        for (const wand::sched::DeviceSlot& member : group.members) {
          const wand::daemon::DeviceService* dev = s.device(member.index);
          if (!dev) {
            throw wand::Error(wand::ErrorCode::kConfig, "card group " + group.key() + ": card " +
                                                            std::to_string(member.index) +
                                                            " is not in memory.devices[]");
          }
          wand::sched::WanStreamRank r;
          r.device_tier = dev->tier;
          r.cuda_device = dev->cuda_device;
          r.budget = c.budget;
          if (dev->budget_bytes > 0) r.budget.budget_bytes = dev->budget_bytes;
          sc.ranks.push_back(r);
        }
        if (!sc.ranks.empty()) {
          sc.device_tier = sc.ranks.front().device_tier;
          sc.cuda_device = sc.ranks.front().cuda_device;
          sc.budget = sc.ranks.front().budget;
        }
        sc.strategy = group.strategy;
        return std::unique_ptr<wand::sched::Pipeline>(std::make_unique<wand::sched::WanPipeline>(dir, sc));
      };
      wand::sched::PipelineFactory f;
      f.name = "wan";
      f.probe = wand::sched::probe_wan_dir;
      f.make = [make_on](const std::filesystem::path& dir) { return make_on(dir, wand::sched::DeviceSlot{}); };
      f.make_on = make_on;
      f.make_group = make_group;
      f.encoder = wand::sched::encode_wan_video;
      f.validate = wand::sched::validate_wan_dir;  // Note [Checks from the config]
      f.traits = wand::sched::wan_dir_traits;
      registry.add_factory(std::move(f));
    } else {
      wand::sched::register_wan_pipeline(registry);
    }
#else
    (void)s;
#endif
    wand::daemon::register_pipelines(registry);     // wand-fake-model.json dirs
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
