#include "daemon/resource_provider.h"

#include "memory/memory_pool.h"
#include "memory/pool_config.h"

namespace wand::daemon {

using nlohmann::json;

proto::PlanReport no_plan() {
  proto::PlanReport p;
  p.available = false;
  p.note = "no placement planner wired into this resource provider";
  return p;
}

ConfigResourceProvider::ConfigResourceProvider(const memory::PoolConfig* pool_config, PlanFn plan)
    : pool_config_(pool_config ? std::optional<memory::PoolConfig>(*pool_config) : std::nullopt),
      plan_(std::move(plan)) {}

proto::TiersReport ConfigResourceProvider::tiers() {
  proto::TiersReport r;
  r.measured = false;
  r.source = "config";
  r.tiers = json::array();
  if (!pool_config_) {
    r.note = "no memory pool (\"memory\": \"off\"): models run resident, nothing to report";
    return r;
  }
  r.note = "configured budgets only, no usage figures";
  const memory::PoolConfig& pc = *pool_config_;
  for (const auto& d : pc.devices) {
    json t = {{"name", "device" + std::to_string(d.index)}, {"kind", "device"}, {"index", d.index},
              {"bytes_capacity", d.bytes}, {"backend", d.backend}, {"source", "config"}};
    if (d.budget_bytes > 0) t["card_budget_bytes"] = d.budget_bytes;
    r.tiers.push_back(t);
  }
  r.tiers.push_back({{"name", "host"}, {"kind", "host"}, {"bytes_capacity", pc.host_bytes},
                     {"pinned", pc.host_pinned}, {"source", "config"}});
  if (pc.disk) {
    r.tiers.push_back({{"name", "disk"}, {"kind", "disk"}, {"bytes_capacity", pc.disk->bytes},
                       {"dir", pc.disk->dir}, {"source", "config"}});
  }
  return r;
}

proto::PlanReport ConfigResourceProvider::plan(const sched::JobSpec& spec) {
  return plan_ ? plan_(spec) : no_plan();
}

PoolResourceProvider::PoolResourceProvider(memory::MemoryPool& pool, AllocatorStatsFn alloc, PlanFn plan)
    : pool_(pool), alloc_(std::move(alloc)), plan_(std::move(plan)) {}

void PoolResourceProvider::set_note(std::string note) {
  std::lock_guard<std::mutex> lock(mu_);
  note_ = std::move(note);
}

void PoolResourceProvider::set_sizing(std::string source, std::map<int, std::uint64_t> card_budgets) {
  std::lock_guard<std::mutex> lock(mu_);
  sizing_ = std::move(source);
  budgets_ = std::move(card_budgets);
}

proto::TiersReport PoolResourceProvider::tiers() {
  const json s = pool_.status_json();
  std::string sizing;
  std::map<int, std::uint64_t> budgets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sizing = sizing_;
    budgets = budgets_;
  }
  proto::TiersReport r;
  r.measured = true;
  r.source = "pool";
  r.tiers = json::array();
  for (json t : s.value("tiers", json::array())) {
    // The names wanctl prints (bytes_capacity / bytes_used) next to the pool's own.
    t["bytes_capacity"] = t.value("capacity_bytes", std::uint64_t{0});
    t["bytes_used"] = t.value("used_bytes", std::uint64_t{0});
    // Note [Reserved at start] (daemon.cpp): host RAM and the disk spool are taken in full.
    const std::string kind = t.value("kind", std::string());
    if (kind == "host" || kind == "disk") t["reserved_bytes"] = t["bytes_capacity"];
    t["source"] = sizing;  // who sized the tier: "config" or "auto" (Note [Auto memory])
    if (t.value("kind", std::string()) == "device") {
      auto b = budgets.find(t.value("device", -1));
      if (b != budgets.end() && b->second > 0) t["card_budget_bytes"] = b->second;
    }
    if (alloc_ && t.value("kind", std::string()) == "device" && t.value("backend", std::string()) == "cuda") {
      const AllocatorStats a = alloc_(t.value("device", 0));
      t["allocator_reserved_bytes"] = a.reserved_bytes;
      t["allocator_peak_reserved_bytes"] = a.peak_reserved_bytes;
    }
    r.tiers.push_back(std::move(t));
  }
  r.note = "io_engine=" + s.value("io_engine", std::string("?")) + " blobs=" +
           std::to_string(s.value("blobs", std::uint64_t{0}));
  if (sizing == "auto") r.note += "; tiers sized from this machine at start (no memory section; wand --check-config shows how)";
  std::lock_guard<std::mutex> lock(mu_);
  if (!note_.empty()) r.note += "; " + note_;
  return r;
}

proto::PlanReport PoolResourceProvider::plan(const sched::JobSpec& spec) {
  return plan_ ? plan_(spec) : no_plan();
}

}  // namespace wand::daemon
