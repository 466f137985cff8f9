// ResourceProvider: where `tiers` and `plan` answers come from. The memory pool
// and the planner implement it once they are wired; until then
// ConfigResourceProvider reports the configured budgets and says so (measured =
// false, source = "config", available = false for plans). No invented numbers.
//
//   std::unique_ptr<ResourceProvider> r = std::make_unique<ConfigResourceProvider>(cfg.memory);
//   proto::TiersReport t = r->tiers();
//
// Threads: called on the daemon's io thread; implementations must be cheap.
#pragma once

#include <mutex>

#include <nlohmann/json.hpp>

#include "proto/responses.h"
#include "scheduler/job_spec.h"

namespace wand::daemon {

class ResourceProvider {
 public:
  virtual ~ResourceProvider() = default;
  virtual proto::TiersReport tiers() = 0;
  virtual proto::PlanReport plan(const sched::JobSpec& spec) = 0;
};

class ConfigResourceProvider : public ResourceProvider {
 public:
  explicit ConfigResourceProvider(nlohmann::json memory_config);
  void set_memory_config(nlohmann::json memory_config);
  proto::TiersReport tiers() override;
  proto::PlanReport plan(const sched::JobSpec& spec) override;

 private:
  std::mutex mu_;
  nlohmann::json memory_;  // guarded by mu_; validated memory::PoolConfig JSON or null
};

}  // namespace wand::daemon
