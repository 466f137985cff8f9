#include "daemon/auto_memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <sys/statvfs.h>

#include "common/error.h"
#include "memory/pool_config.h"
#include "scheduler/plan/calibration.h"
#include "scheduler/plan/model_shape.h"

namespace wand::daemon {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::uint64_t kTierAlign = 2ull << 20;  // tiers in whole 2 MiB (the CUDA allocation grain)

std::uint64_t align_down(std::uint64_t x, std::uint64_t a) { return x / a * a; }
std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

std::uint64_t context_of(const DaemonConfig& cfg) {
  return cfg.executor.context_bytes > 0
             ? cfg.executor.context_bytes
             : static_cast<std::uint64_t>(sched::plan::Calibration::defaults().context_bytes.value);
}

}  // namespace

std::uint64_t mem_available_bytes(const fs::path& meminfo) {
  std::ifstream in(meminfo);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream s(line.substr(13));
    std::uint64_t kib = 0;
    std::string unit;
    if (s >> kib >> unit && unit == "kB") return kib * 1024;
    return 0;
  }
  return 0;
}

std::uint64_t filesystem_free_bytes(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  if (ec) return 0;
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) return 0;
    p = p.parent_path();
  }
  struct statvfs st {};
  if (::statvfs(p.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
}

fs::path auto_spool_dir(const DaemonConfig& cfg) { return fs::path(cfg.state_dir) / "spool"; }

MachineFacts probe_machine(const DaemonConfig& cfg, const GpuProbe& gpus, const std::string& gpu_source) {
  MachineFacts m;
  if (gpus) m.gpus = gpus();
  m.gpu_source = gpu_source;
  m.mem_available_bytes = mem_available_bytes();
  m.spool_free_bytes = filesystem_free_bytes(auto_spool_dir(cfg));
  return m;
}

std::vector<ModelNeed> model_needs(const DaemonConfig& cfg) {
  std::vector<ModelNeed> out;
  for (const auto& [name, dir] : cfg.models) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec) || fs::exists(fs::path(dir) / "wand-fake-model.json", ec)) continue;
    try {
      const sched::plan::ModelShape m = sched::plan::model_shape_from_dir(dir);
      ModelNeed n;
      n.name = name;
      n.max_block_bytes = m.max_block_run_bytes();
      for (std::size_t e = 0; e < m.experts.size(); ++e) {
        n.blocks_bytes += m.blocks_run_bytes(e);
        n.host_bytes += m.expert_run_bytes(e);
      }
      n.host_bytes += m.t5_bytes;
      out.push_back(n);
    } catch (const std::exception&) {
      // Not a Wan release layout (or unreadable): the registry reports it when a job asks.
    }
  }
  return out;
}

ResolvedMemory resolve_memory(const DaemonConfig& cfg, const MachineFacts& facts, const std::vector<ModelNeed>& models) {
  ResolvedMemory r;
  r.mode = cfg.memory_mode;
  if (cfg.memory_mode == "off") {
    r.lines.push_back("memory: off (no pool): models run resident");
    return r;
  }
  if (cfg.memory_mode == "config") {
    // Note [Card budget] 3.: a visible CUDA card without a configured budget gets its total
    // less the headroom.
    r.memory = cfg.memory();
    if (cfg.executor.device_budget > 0 || !r.memory.contains("devices")) return r;
    for (auto& d : r.memory["devices"]) {
      if (d.contains("budget") || d.value("backend", std::string("auto")) == "cpu") continue;
      const int index = d.value("index", -1);
      for (const GpuInfo& g : facts.gpus) {
        if (g.index != index || g.total_bytes <= kAutoDeviceHeadroom) continue;
        const std::uint64_t budget = g.total_bytes - kAutoDeviceHeadroom;
        d["budget"] = budget;
        d["_budget_source"] = "auto: the card's " + format_bytes(g.total_bytes) + " less " +
                              format_bytes(kAutoDeviceHeadroom) + " headroom (no budget configured)";
        r.lines.push_back("device " + std::to_string(index) + " (" + g.name + "): no card budget configured: " +
                          format_bytes(budget) + " (its total " + format_bytes(g.total_bytes) + " less " +
                          format_bytes(kAutoDeviceHeadroom) + " headroom)");
      }
    }
    return r;
  }

  // Note [Auto memory].
  const std::uint64_t context = context_of(cfg);
  std::uint64_t model_blocks = 0, model_block = 0, model_host = 0;
  std::string biggest;
  for (const ModelNeed& m : models) {
    if (m.blocks_bytes > model_blocks) {
      model_blocks = m.blocks_bytes;
      biggest = m.name;
    }
    model_block = std::max(model_block, m.max_block_bytes);
    model_host += m.host_bytes;
  }
  json devices = json::array();
  if (!facts.gpus.empty() && model_blocks == 0) {
    r.lines.push_back(std::to_string(facts.gpus.size()) +
                      " GPU(s) but no Wan model configured: no device tier (nothing would stream through it)");
  }
  for (const GpuInfo& g : model_blocks > 0 ? facts.gpus : std::vector<GpuInfo>{}) {
    const std::string card = "device " + std::to_string(g.index) + " (" + (g.name.empty() ? "GPU" : g.name) + ", " +
                             format_bytes(g.total_bytes) + ")";
    if (g.total_bytes < kAutoDeviceHeadroom + context + kAutoMinTier + kMinActivationRoom) {
      r.lines.push_back(card + ": no device tier: below " +
                        format_bytes(kAutoDeviceHeadroom + context + kAutoMinTier + kMinActivationRoom) +
                        " (headroom + context + the smallest tier + activation room)");
      continue;
    }
    const std::uint64_t budget = g.total_bytes - kAutoDeviceHeadroom;
    const std::uint64_t machine_tier =
        budget > context + kAutoActivationReserve + kAutoMinTier ? budget - context - kAutoActivationReserve : kAutoMinTier;
    std::uint64_t tier = machine_tier;
    std::string why = "budget - context " + format_bytes(context) + " - activation reserve " +
                      format_bytes(kAutoActivationReserve);
    if (machine_tier == kAutoMinTier) why = "the smallest auto tier";
    // At most every block of the largest model, at least three of its blocks (the window of
    // two and the block being released).
    const std::uint64_t model_tier = std::max(align_up(model_blocks, kTierAlign), align_up(3 * model_block, kTierAlign));
    if (model_tier < tier) {
      tier = model_tier;
      why = "every block of " + biggest + " (" + format_bytes(model_blocks) + ")";
    }
    tier = std::max<std::uint64_t>(align_down(tier, kTierAlign), kTierAlign);
    devices.push_back({{"index", g.index},
                       {"bytes", tier},
                       {"budget", budget},
                       {"backend", "auto"},
                       {"_budget_source", "auto: the card's " + format_bytes(g.total_bytes) + " less " +
                                              format_bytes(kAutoDeviceHeadroom) + " headroom"}});
    r.lines.push_back(card + ": card budget " + format_bytes(budget) + " (total less " +
                      format_bytes(kAutoDeviceHeadroom) + " headroom), device tier " + format_bytes(tier) + " (" + why +
                      "), activation room " + format_bytes(budget - context - tier) + " beside the context");
  }
  if (facts.gpus.empty()) r.lines.push_back("no GPU (" + facts.gpu_source + "): no device tier, models run resident");

  // Host tier.
  std::uint64_t host = 0;
  std::string host_why;
  if (facts.mem_available_bytes > 0) {
    const std::uint64_t headroom = std::max(kAutoHostHeadroomMin, facts.mem_available_bytes / 4);
    const std::uint64_t machine = facts.mem_available_bytes > headroom ? facts.mem_available_bytes - headroom : 0;
    const std::uint64_t need = model_host + kAutoHostSlack;
    host = std::min(machine, need);
    host_why = host == need ? "what the configured Wan models need (DiT + umT5) + " + format_bytes(kAutoHostSlack)
                            : "MemAvailable " + format_bytes(facts.mem_available_bytes) + " less " + format_bytes(headroom) +
                                  " headroom";
  }
  host = align_down(host, 4096);
  if (host == 0) {
    host = kAutoHostSlack;
    host_why = "MemAvailable unknown or below the headroom: the smallest host tier";
  }
  // Page-locked only for real CUDA cards (a test's stand-in cards copy from plain memory).
  const bool pinned = !devices.empty() && facts.gpu_source == "cuda";
  r.lines.push_back("host tier " + format_bytes(host) + " (" + host_why + "; MemAvailable " +
                    format_bytes(facts.mem_available_bytes) + "), " +
                    (pinned ? "page-locked" : "pageable (no GPU to copy to)"));
  r.memory = {{"host", {{"bytes", host}, {"pinned", pinned}}}, {"devices", devices}};

  // Spool.
  const std::uint64_t spool = align_down(std::min(kAutoSpoolMax, facts.spool_free_bytes / 4), 4096);
  const std::string dir = auto_spool_dir(cfg).string();
  if (spool >= kAutoMinSpool) {
    r.memory["disk"] = {{"dir", dir}, {"bytes", spool}};
    r.lines.push_back("spool " + dir + " " + format_bytes(spool) + " (min(" + format_bytes(kAutoSpoolMax) +
                      ", a quarter of the " + format_bytes(facts.spool_free_bytes) + " free there))");
  } else {
    r.lines.push_back("no spool: " + format_bytes(facts.spool_free_bytes) + " free at " + dir);
  }
  return r;
}

}  // namespace wand::daemon
