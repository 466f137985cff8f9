#include "daemon/resource_provider.h"

#include "memory/pool_config.h"

namespace wand::daemon {

using nlohmann::json;

ConfigResourceProvider::ConfigResourceProvider(json memory_config)
    : memory_(std::move(memory_config)) {}

void ConfigResourceProvider::set_memory_config(json memory_config) {
  std::lock_guard<std::mutex> lock(mu_);
  memory_ = std::move(memory_config);
}

proto::TiersReport ConfigResourceProvider::tiers() {
  json mem;
  {
    std::lock_guard<std::mutex> lock(mu_);
    mem = memory_;
  }
  proto::TiersReport r;
  r.measured = false;
  r.source = "config";
  r.tiers = json::array();
  if (mem.is_null()) {
    r.note = "no memory section configured and no memory pool wired: nothing to report";
    return r;
  }
  r.note = "memory pool not wired yet: configured budgets only, no usage figures";
  memory::PoolConfig pc = memory::PoolConfig::from_json(mem);
  for (const auto& d : pc.devices) {
    r.tiers.push_back({{"name", "device" + std::to_string(d.index)}, {"kind", "device"},
                       {"index", d.index}, {"bytes_capacity", d.bytes}, {"backend", d.backend}});
  }
  r.tiers.push_back({{"name", "host"}, {"kind", "host"}, {"bytes_capacity", pc.host_bytes},
                     {"pinned", pc.host_pinned}});
  if (pc.disk) {
    r.tiers.push_back({{"name", "disk"}, {"kind", "disk"}, {"bytes_capacity", pc.disk->bytes},
                       {"dir", pc.disk->dir}});
  }
  return r;
}

proto::PlanReport ConfigResourceProvider::plan(const sched::JobSpec&) {
  proto::PlanReport p;
  p.available = false;
  p.note = "no placement planner wired into this daemon yet";
  return p;
}

}  // namespace wand::daemon
