#include "daemon/daemon.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio.hpp>

#include "common/error.h"
#include "common/log.h"
#include "daemon/group_chooser.h"
#include "daemon/handlers/context.h"
#include "daemon/notifier.h"
#include "daemon/pipelines.h"
#include "daemon/plan_service.h"
#include "daemon/resource_provider.h"
#include "daemon/server.h"
#include "scheduler/durable_file.h"
#include "scheduler/job_runner.h"
#include "scheduler/plan/placement.h"
#ifdef WAND_DAEMON_CUDA
#include "memory/cuda/pinned_host.h"
#endif

namespace wand::daemon {

namespace asio = boost::asio;

DaemonConfig effective_config(const DaemonOptions& o) {
  DaemonConfig c = o.config_file ? load_config_file(*o.config_file) : DaemonConfig{};
  const ConfigFlags& f = o.flags;
  if (f.socket_path) c.socket_path = *f.socket_path;
  if (f.socket_group) c.socket_group = *f.socket_group;
  if (f.socket_mode) c.socket_mode = *f.socket_mode;
  if (f.state_dir) c.state_dir = *f.state_dir;
  if (f.admin_group) c.admin_group = *f.admin_group;
  if (f.log_level) c.log_level = *f.log_level;
  for (const auto& [name, dir] : f.models) c.models[name] = dir;
  // Re-validate what the flags set (they get the same checks as the file); the memory and
  // executor sections are the file's, parsed once already (Note [One memory section]).
  nlohmann::json set_by_flags = config_to_json(c);
  set_by_flags.erase("memory");
  set_by_flags.erase("executor");
  parse_config(set_by_flags, o.config_file ? o.config_file->string() + " + flags" : "flags");
  return c;
}

namespace {

std::map<std::string, std::filesystem::path> model_dirs_of(const DaemonConfig& c) {
  std::map<std::string, std::filesystem::path> m;
  for (const auto& [n, d] : c.models) m[n] = d;
  return m;
}

}  // namespace

DaemonConfig checked_config(const DaemonOptions& o) {
  DaemonConfig c = effective_config(o);
  // The factories' probes only: no pool (PipelineServices{}), nothing is loaded.
  sched::PipelineRegistry probe;
  if (o.register_pipelines) {
    o.register_pipelines(probe, PipelineServices{});
  } else {
    register_pipelines(probe);
  }
  probe.set_models(model_dirs_of(c));
  return c;
}

namespace {

memory::PoolDeps default_pool_deps() {
#ifdef WAND_DAEMON_CUDA
  return memory::cuda::pool_deps();  // "auto" devices fall back to the CPU tier without a GPU
#else
  return {};
#endif
}

// The GPU probe of Note [Auto memory] and its name.
std::pair<GpuProbe, std::string> gpu_probe_of(const DaemonOptions& o) {
  if (o.gpu_probe) return {o.gpu_probe, o.gpu_source.empty() ? std::string("test") : o.gpu_source};
#ifdef WAND_DAEMON_CUDA
  return {cuda_visible_gpus, "cuda"};
#else
  return {GpuProbe{}, "none: built without CUDA"};
#endif
}

// The memory section the daemon runs with (Note [Auto memory]).
ResolvedMemory resolved_memory(const DaemonOptions& o, const DaemonConfig& cfg) {
  const auto [probe, source] = gpu_probe_of(o);
  if (cfg.memory_mode == "off") return resolve_memory(cfg, MachineFacts{}, {});
  return resolve_memory(cfg, probe_machine(cfg, probe, source), model_needs(cfg));
}

// Note [State dir lock]: one daemon per state dir. Two daemons on one directory
// (say, two sockets) would both replay and append the journal, hand out the same
// ids and lose each other's jobs. The first holds an exclusive flock on
// <state_dir>/wand.lock (with its pid written in it, for the message) for its whole
// life; a second one exits with status 2 naming the holder. flock is released by
// the kernel when the holder dies, so a crash never leaves a stale lock.
class StateDirLock {
 public:
  explicit StateDirLock(const std::filesystem::path& dir) {
    const std::filesystem::path path = dir / "wand.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw Error(ErrorCode::kIo, "open " + path.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      char buf[32] = {0};
      const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
      std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("?");
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(fd_);
      fd_ = -1;
      if (e == EWOULDBLOCK) {
        throw Error(ErrorCode::kConfig, "state_dir " + dir.string() + " is in use by another wand (pid " + holder +
                                            ", lock " + path.string() + "); one daemon per state dir");
      }
      throw Error(ErrorCode::kIo, "flock " + path.string() + ": " + std::strerror(e));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
      // The lock holds without the pid (a full disk): the message says "?".
      log::get("rpc")->warn("state dir lock: pid not written path={} error=\"{}\"", path.string(), std::strerror(errno));
    }
  }
  ~StateDirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  int fd_ = -1;
};

// The state dir holds every user's prompts, input images and results: a directory
// the daemon creates is 0700 (systemd's StateDirectory= sets its own mode). An
// existing one is left as it is.
void make_state_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return;
  if (dir.has_parent_path()) sched::ensure_dir(dir.parent_path());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(ErrorCode::kIo, "create directory " + dir.string() + ": " + std::strerror(errno));
  }
}

// Note [Job admission]: a request inside the protocol's ranges can still need more
// memory than the machine has (tiny-t2v at 4096x4096 with 4093 frames: the daemon was
// OOM-killed, and again at every restart). So submit refuses, naming the bytes:
//  - host: the decoded video every pipeline holds at the end, [3, F, H, W] fp32 (what
//    model::vae_decode_output_bytes gives with elem_bytes 4) plus its RGB uint8 frames
//    (model::video_frames_from_tensor), against the host's memory (physical RAM, or the
//    cgroup's memory.max when lower) less the pool's host tier;
//  - device: with every card's budget known, the planner's predicted peak on the smallest
//    card that can run the job (sched::plan::PeakPlanner, the runner's placement estimator).
std::uint64_t host_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  std::uint64_t bytes = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
  if (FILE* f = std::fopen("/sys/fs/cgroup/memory.max", "r")) {
    unsigned long long limit = 0;
    if (std::fscanf(f, "%llu", &limit) == 1 && limit > 0 && (bytes == 0 || limit < bytes)) bytes = limit;
    std::fclose(f);
  }
  return bytes;
}

std::uint64_t decoded_video_host_bytes(const sched::JobSpec& spec) {
  const std::uint64_t voxels = static_cast<std::uint64_t>(spec.frames) * static_cast<std::uint64_t>(spec.height) *
                               static_cast<std::uint64_t>(spec.width);
  return voxels * 3 * 4 + voxels * 3;
}

// Note [Stuck worker] (job_runner.cpp): how long shutdown waits for the workers.
constexpr std::chrono::seconds kShutdownGrace{10};

// Note [Stuck cancel]: a cancelled job stops at its next cancel check (between DiT blocks, VAE
// latent frames, and the phases), seconds at most. One still running a while after its
// cancel sits in a call that never returns (issue 15: an open() on a FIFO, a hung driver
// call) and holds its worker, and with it its card: jobs for that card wait. The worker
// cannot be given back while the daemon runs: its thread owns the card's pipeline (device
// memory, the pool's blobs, the streamed executor, used by one job at a time), so a new
// worker on that card would share them with a thread that may wake up at any moment, and a
// thread cannot be stopped from outside (pthread_cancel would leave the pool's locks held).
// The daemon says so instead, once per job, in the log (error) and in systemd's STATUS
// ("stuck=N"), with what frees it: a restart, which ends within kShutdownGrace, ends the
// cancelled job as cancelled (it is not run again) and resumes the others from their
// checkpoints. Default: after 60 s (the slowest cancel check is a block of a streamed A14B
// step, a few seconds); WAND_STUCK_CANCEL_S=N changes it (tests).
std::chrono::seconds stuck_cancel_after() {
  if (const char* e = std::getenv("WAND_STUCK_CANCEL_S")) {
    const long s = std::strtol(e, nullptr, 10);
    if (s > 0) return std::chrono::seconds(s);
  }
  return std::chrono::seconds(60);
}

}  // namespace

nlohmann::json ConfigCheck::to_json() const {
  nlohmann::json j = config_to_json(config);
  if (config.memory_mode != "config") {
    j["_memory_resolved"] = {{"mode", config.memory_mode}, {"memory", config.memory()}, {"decisions", memory_lines}};
  } else if (!memory_lines.empty()) {
    j["memory"] = config.memory();
    j["_memory_resolved"] = {{"mode", "config"}, {"decisions", memory_lines}};
  }
  return j;
}

ConfigCheck check_config(const DaemonOptions& options) {
  ConfigCheck c;
  c.config = checked_config(options);  // Note [Check config]: the daemon's own start checks
  ResolvedMemory rm = resolved_memory(options, c.config);
  c.config.set_memory(rm.memory);
  c.memory_lines = rm.lines;
  c.warnings = config_warnings(c.config);
  return c;
}

struct Daemon::Impl {
  DaemonOptions options;
  DaemonConfig config;          // memory: the resolved section (Note [Auto memory])
  nlohmann::json file_memory;   // the memory section as configured, for reload's comparison
  // The cards (Note [Card budget]) and the planner's machine of the resolved section, built
  // once at start: the pool's cards, `plan`, `tiers`, placement and card groups all take these.
  PlanMachine machine;
  asio::io_context io;
  std::unique_ptr<sched::JobQueue> queue;
  std::unique_ptr<sched::CheckpointStore> store;
  // Note [One pool] (daemon.h). Declared before the registry: the pipelines it caches
  // hold blobs in the pool, so the pool is destroyed after them.
  std::unique_ptr<memory::MemoryPool> pool;
  PipelineServices services;
  sched::PipelineRegistry registry;
  std::unique_ptr<ResourceProvider> resources;
  PoolResourceProvider* pool_resources = nullptr;     // `resources` when there is a pool
  std::unique_ptr<Access> access;
  std::unique_ptr<HandlerContext> ctx;
  std::unique_ptr<Server> server;
  std::unique_ptr<sched::JobRunner> runner;
  std::unique_ptr<StateDirLock> state_lock;
  std::function<void(const sched::JobSpec&)> admit_device;  // Note [Job admission]: the planner's check
  Notifier notifier;
  asio::signal_set signals{io};
  asio::steady_timer status_timer{io};
  int listener = 0;
  bool stopping = false;
  std::string last_status;
  // Note [Stuck cancel]: running jobs with a cancel pending, since when (seen by the status
  // timer), and whether they were reported. io thread only.
  struct PendingCancel {
    std::chrono::steady_clock::time_point since;
    bool reported = false;
  };
  std::map<std::string, PendingCancel> pending_cancels;
  std::chrono::seconds stuck_after = stuck_cancel_after();
  int stuck_jobs = 0;

  void check_stuck_cancels() {
    const auto now = std::chrono::steady_clock::now();
    std::map<std::string, PendingCancel> next;
    int stuck = 0;
    for (const auto& r : queue->list()) {
      if (r.phase != sched::JobPhase::kRunning || !r.cancel_requested) continue;
      auto it = pending_cancels.find(r.id);
      PendingCancel p = it == pending_cancels.end() ? PendingCancel{now, false} : it->second;
      if (now - p.since >= stuck_after) {
        ++stuck;
        if (!p.reported) {
          p.reported = true;
          const long secs = std::chrono::duration_cast<std::chrono::seconds>(now - p.since).count();
          log::get("sched")->error(
              "job stuck id={} stage=\"{}\" cancelled_for={}s: it did not stop after its cancel (blocked outside "
              "its cancel checks); its worker serves no other job until wand restarts: `systemctl restart wand` "
              "frees it (the job ends cancelled, the others resume from their checkpoints; Note [Stuck cancel])",
              r.id, r.stage, secs);
        }
      }
      next[r.id] = p;
    }
    pending_cancels = std::move(next);
    stuck_jobs = stuck;
  }

  std::map<std::string, std::filesystem::path> model_dirs() const { return model_dirs_of(config); }

  // Note [Server paths] (job_view.h): the directories users' messages do not name.
  ServerPaths server_paths() const {
    ServerPaths p;
    p.add(config.state_dir, "<state_dir>");
    for (const auto& [name, dir] : config.models) p.add(dir, "<model " + name + ">");
    if (const memory::PoolConfig* pc = config.pool_config(); pc != nullptr && pc->disk) {
      p.add(pc->disk->dir, "<spool>");  // the parsed section (Note [One memory section])
    }
    if (!services.pack_dir.empty()) p.add(services.pack_dir, "<pack_dir>");  // often the spool's
    for (const auto& [name, file] : config.loras) p.add(file, "<lora " + name + ">");  // Note [Daemon LoRAs]
    return p;
  }

  std::string status_line() {
    auto c = queue->counts();
    std::string s = "queued=" + std::to_string(c.queued) + " running=" + std::to_string(c.running) +
                    " done=" + std::to_string(c.done) + " clients=" +
                    std::to_string(server ? server->session_count() : 0);
    if (stuck_jobs > 0) s += " stuck=" + std::to_string(stuck_jobs);  // Note [Stuck cancel]
    try {
      auto t = resources->tiers();
      for (const auto& tier : t.tiers) {
        s += " " + tier.value("name", std::string("?")) + "=" +
             format_bytes(tier.value("bytes_capacity", std::uint64_t{0}));
      }
    } catch (const std::exception&) {
    }
    return s;
  }

  void arm_status_timer() {
    long ms = notifier.watchdog_interval_ms();
    if (ms <= 0 || ms > 5000) ms = 5000;
    status_timer.expires_after(std::chrono::milliseconds(ms));
    status_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping) return;
      if (notifier.watchdog_interval_ms() > 0) notifier.watchdog();
      check_stuck_cancels();
      std::string line = status_line();
      if (line != last_status) {  // systemd needs no repeats
        notifier.status(line);
        last_status = line;
      }
      arm_status_timer();
    });
  }

  void wait_signal() {
    signals.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload();
        wait_signal();
      } else {
        log::get("rpc")->info("signal={} action=stop", sig == SIGTERM ? "TERM" : "INT");
        shutdown();
      }
    });
  }

  void reload() {
    notifier.reloading();
    try {
      DaemonConfig next = effective_config(options);
      if (next.socket_path != config.socket_path || next.state_dir != config.state_dir ||
          next.socket_group != config.socket_group || next.socket_mode != config.socket_mode) {
        log::get("rpc")->warn("reload: socket and state_dir changes take effect at restart");
      }
      log::set_level(next.log_level);
      access->set_admin_group(next.admin_group);
      std::map<std::string, std::filesystem::path> m;
      for (const auto& [n, d] : next.models) m[n] = d;
      registry.set_models(m);
      const bool memory_changed =
          next.memory_mode != config.memory_mode || (next.memory_mode == "config" && next.memory() != file_memory);
      if (memory_changed || next.executor != config.executor) {
        // Note [One pool]: never rebuilt here (a job may be running on it, and the
        // cached pipelines hold its blobs): memory and executor changes need a restart.
        log::get("rpc")->warn("reload: the memory and executor sections take effect at restart (running pool kept)");
        if (pool_resources) pool_resources->set_note("memory/executor config changed: restart wand to apply");
      } else if (pool_resources) {
        pool_resources->set_note("");
      }
      server->set_max_message_bytes(next.max_message_bytes);
      config.admin_group = next.admin_group;
      config.models = next.models;
      config.loras = next.loras;
      config.lora_dir = next.lora_dir;
      config.model_loras = next.model_loras;
      ctx->loras = LoraCatalog(config);
      config.log_level = next.log_level;
      config.max_message_bytes = next.max_message_bytes;
      ctx->server_paths = server_paths();  // the models may have moved
      log::get("rpc")->info("config reloaded models={}", next.models.size());
    } catch (const Error& e) {
      log::get("rpc")->error("reload failed, keeping the running config error=\"{}\"", e.what());
    }
    notifier.ready(status_line());
  }

  // Note [One pool]: the daemon's pool from the "memory" section, and what streamed
  // pipelines need from it.
  void build_pool() {
    if (!config.pool_config()) return;
    const memory::PoolConfig& pc = *config.pool_config();
    // A spool directory that does not exist yet is made (a fresh state_dir, the auto
    // section's <state_dir>/spool), not a reason to stop.
    if (pc.disk) sched::ensure_dir(pc.disk->dir);
    pool = std::make_unique<memory::MemoryPool>(pc, options.pool_deps ? options.pool_deps() : default_pool_deps());
    // Note [Reserved at start]: the pool takes its host tier (RAM, page-locked when it can:
    // mlock or cudaHostAlloc) and its disk spool (posix_fallocate) in full now, whatever the
    // jobs will use; say how much, where `journalctl -u wand` and `wanctl tiers` show it.
    for (const auto& t : pool->status_json().value("tiers", nlohmann::json::array())) {
      const std::string kind = t.value("kind", std::string());
      const std::string bytes = format_bytes(t.value("capacity_bytes", std::uint64_t{0}));
      if (kind == "host") {
        log::get("mem")->info("host tier reserved bytes={} page_locked={} (RAM taken at start, memory.host)", bytes,
                              t.value("page_locked", false));
      } else if (kind == "disk") {
        log::get("mem")->info("disk spool reserved bytes={} path={} (allocated at start, memory.disk)", bytes,
                              t.value("path", std::string()));
      }
    }
    services.pool = pool.get();
    services.executor = config.executor;
    for (const auto& [name, w] : config.model_weights) {  // read at start (a reload keeps them)
      auto it = config.models.find(name);
      if (it != config.models.end()) services.weights_by_dir[std::filesystem::path(it->second).lexically_normal().string()] = w;
    }
    const std::vector<int> devs = pool->device_tiers();
    if (!devs.empty()) {
      services.device_tier = devs[0];
      services.cuda_device = pool->tier(devs[0]).host_addressable() ? -1 : pc.devices[0].index;
    }
    // Note [Daemon slots]: one card per memory.devices[] entry (device_tiers() is in that order),
    // with its budget from the card list (Note [Card budget]).
    const std::vector<CardBudget>& budgets = machine.cards;
    for (std::size_t i = 0; i < devs.size() && i < pc.devices.size(); ++i) {
      DeviceService d;
      d.index = pc.devices[i].index;
      d.tier = devs[i];
      const bool cpu = pool->tier(devs[i]).host_addressable();
      d.cuda_device = cpu ? -1 : d.index;
      d.name = (cpu ? "cpu:" : "cuda:") + std::to_string(d.index);
      d.budget_bytes = budgets[i].budget_bytes;
      services.devices.push_back(d);
    }
    services.pack_dir = !config.executor.pack_dir.empty() ? config.executor.pack_dir
                        : pc.disk                         ? pc.disk->dir
                                                          : (std::filesystem::path(config.state_dir) / "pack").string();
    sched::ensure_dir(services.pack_dir);
    log::get("rpc")->info("memory pool tiers={} device_tier={} cuda_device={} pack_dir={} streaming={}",
                          pool->tier_count(), services.device_tier, services.cuda_device, services.pack_dir,
                          services.streaming());
  }

  void shutdown() {
    if (stopping) return;
    stopping = true;
    notifier.stopping();
    ctx->accepting = false;
    server->stop_accepting();
    runner->request_stop();  // the running job stops at a block boundary and stays queued (joined after io.run)
    queue->unsubscribe(listener);
    server->close_all();
    status_timer.cancel();
    io.stop();
  }
};

Daemon::Daemon(DaemonOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

Daemon::~Daemon() = default;

int Daemon::run() {
  Impl& d = *impl_;
  d.config = checked_config(d.options);  // Note [Check config]
  log::set_level(d.config.log_level);
  make_state_dir(d.config.state_dir);
  d.state_lock = std::make_unique<StateDirLock>(d.config.state_dir);  // before the journal is read
  // Note [Auto memory]: the section the pool is built from, and the plan and tiers answers.
  d.file_memory = d.config.memory();
  {
    ResolvedMemory rm = resolved_memory(d.options, d.config);
    for (const auto& line : rm.lines) log::get("rpc")->info("memory {}: {}", rm.mode, line);
    d.config.set_memory(std::move(rm.memory));
  }
  d.machine = plan_machine(d.config);  // the card list, once
  d.queue = std::make_unique<sched::JobQueue>(d.config.state_dir);
  d.store = std::make_unique<sched::CheckpointStore>(d.config.state_dir);
  for (const auto& r : d.queue->list()) {
    // A crash between a job's end and its checkpoint's removal leaves one behind.
    if (sched::is_terminal(r.phase)) d.store->remove(r.id);
  }
  d.build_pool();
  if (d.options.register_pipelines) {
    d.options.register_pipelines(d.registry, d.services);
  } else {
    register_pipelines(d.registry);
  }
  d.registry.set_models(d.model_dirs());
  PlanFn plan = [&d](const sched::JobSpec& spec) { return plan_report(d.config, d.machine, d.registry, spec); };
  if (d.pool) {
    auto r = std::make_unique<PoolResourceProvider>(*d.pool, d.options.allocator_stats, plan);
    std::map<int, std::uint64_t> budgets;
    for (const DeviceService& dev : d.services.devices) budgets[dev.index] = dev.budget_bytes;
    r->set_sizing(d.config.memory_mode == "auto" ? "auto" : "config", budgets);
    d.pool_resources = r.get();
    d.resources = std::move(r);
  } else {
    auto r = std::make_unique<ConfigResourceProvider>(d.config.pool_config(), plan);
    d.resources = std::move(r);
  }
  d.access = std::make_unique<Access>(d.config.admin_group);
  d.ctx = std::make_unique<HandlerContext>(
      HandlerContext{*d.queue, d.registry, *d.store, *d.resources, *d.access, true, {}, {}});
  d.ctx->server_paths = d.server_paths();
  d.ctx->loras = LoraCatalog(d.config);  // Note [Daemon LoRAs]
  {
    // Note [Job admission].
    const std::uint64_t host = host_memory_bytes();
    const std::uint64_t pool_host = d.pool ? d.config.pool_config()->host_bytes : 0;
    const std::uint64_t budget = host > pool_host ? host - pool_host : 0;
    d.ctx->admit = [budget, host, pool_host, &d](const sched::JobSpec& spec) {
      const std::uint64_t need = decoded_video_host_bytes(spec);
      if (budget > 0 && need > budget) {
        throw Error(ErrorCode::kOutOfMemory,
                    "job (" + std::to_string(spec.width) + "x" + std::to_string(spec.height) + ", " +
                        std::to_string(spec.frames) + " frames) needs " + format_bytes(need) + " (" +
                        std::to_string(need) + " bytes) of host memory for its decoded video, more than the " +
                        format_bytes(budget) + " this host has for jobs (" + format_bytes(host) + " less the pool's " +
                        format_bytes(pool_host) + " host tier)");
      }
      if (d.admit_device) d.admit_device(spec);
    };
  }
  ServerOptions so{d.config.socket_path, d.config.socket_group, d.config.socket_mode,
                   d.config.max_message_bytes, d.config.max_clients};
  apply_timeout_env(so);  // Note [Client limits] (session.h)
  d.server = std::make_unique<Server>(d.io, *d.ctx, so, [&d] {
    asio::post(d.io, [&d] { d.shutdown(); });
  });
  d.server->listen();
  d.listener = d.queue->subscribe([&d](const sched::JobRecord& r, const std::string& kind) {
    asio::post(d.io, [&d, r, kind] {
      if (!d.stopping) d.server->on_job_event(r, kind);
    });
  });
  if (d.services.streaming() && !d.services.devices.empty()) {
    // Note [Daemon slots]: one worker per card.
    sched::JobRunnerOptions ro;
    for (const DeviceService& dev : d.services.devices) ro.slots.push_back({dev.index, dev.budget_bytes, dev.name});
    bool every_budget = true;  // Note [Card budget]: placement needs every card's whole budget
    for (const auto& s : ro.slots) every_budget = every_budget && s.vram_budget_bytes > 0;
    if (every_budget) {
      auto planner = std::make_shared<sched::plan::PeakPlanner>(d.machine.machine, plan_calibration(d.config),
                                                                d.registry, ro.slots);
      ro.estimator = [planner](const sched::JobSpec& spec) { return (*planner)(spec); };
      // Note [Job admission]: a job no card can run is refused at submit, not failed later.
      d.admit_device = [planner](const sched::JobSpec& spec) {
        try {
          (*planner)(spec);
        } catch (const Error& e) {
          if (e.code() == ErrorCode::kOutOfMemory) throw;  // too big for every card
        }
      };
    }
    std::string names;
    for (const auto& s : ro.slots) {
      names += (names.empty() ? "" : ",") + s.name + "=" +
               (s.vram_budget_bytes ? format_bytes(s.vram_budget_bytes) : std::string("unlimited"));
    }
    // Note [Daemon card groups] (group_chooser.h): with 2+ cards a job may run on several.
    if (ro.slots.size() >= 2) ro.group_chooser = make_group_chooser(d.config, d.machine, d.registry);
    log::get("rpc")->info("job-parallel slots={} placement={} parallel={}", names, ro.estimator ? "planner" : "none",
                          ro.group_chooser ? d.config.executor.parallel : std::string("off"));
    d.runner = std::make_unique<sched::JobRunner>(*d.queue, d.registry, *d.store, std::move(ro));
  } else {
    d.runner = std::make_unique<sched::JobRunner>(*d.queue, d.registry, *d.store);
  }
  d.runner->start();
  d.signals.add(SIGTERM);
  d.signals.add(SIGINT);
  d.signals.add(SIGHUP);
  d.wait_signal();
  d.arm_status_timer();
  log::get("rpc")->info("ready state_dir={} models={} {}", d.config.state_dir, d.config.models.size(),
                        d.status_line());
  d.notifier.ready(d.status_line());
  d.io.run();
  // Exiting now: a late SIGTERM (e.g. right after a shutdown request) must not
  // turn a clean exit into a death by signal.
  boost::system::error_code ec;
  d.signals.clear(ec);
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  if (!d.runner->stop_within(kShutdownGrace)) {
    // Note [Stuck worker]: everything acknowledged is in the journal already; the
    // stuck job is "running" there and is queued again at the next start.
    log::get("rpc")->error("a worker did not stop within {} s (a job blocked outside its cancel checks); "
                           "exiting without it",
                           kShutdownGrace.count());
    log::get("rpc")->flush();
    std::fflush(stderr);
    std::_Exit(0);
  }
  d.runner.reset();
  d.server.reset();
  d.ctx.reset();
  d.resources.reset();
  log::get("rpc")->info("stopped");
  return 0;
}

}  // namespace wand::daemon
