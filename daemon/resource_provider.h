// ResourceProvider: where `tiers` and `plan` answers come from.
// - PoolResourceProvider: the daemon's memory pool (Note [One pool], daemon.h):
//   pool.status_json() per tier (measured = true, source = "pool") plus, per CUDA
//   device tier, LibTorch's caching allocator reserved / peak reserved bytes; every tier
//   carries "source": "config" or "auto" (who sized it) and device tiers their card budget.
// - ConfigResourceProvider: no pool configured: the configured budgets, if any, and
//   says so (measured = false, source = "config"). No invented numbers.
// Both answer `plan` through the PlanFn they are given (the planner, daemon/plan_service.h),
// else available = false.
//
//   auto r = std::make_unique<PoolResourceProvider>(pool, alloc_stats, plan_fn);
//   proto::TiersReport t = r->tiers();
//
// Threads: called on the daemon's io thread; implementations must be cheap. The pool is
// thread-safe; the allocator callback must be callable from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "memory/pool_config.h"
#include "proto/responses.h"
#include "scheduler/job_spec.h"

namespace wand::memory {
class MemoryPool;
}  // namespace wand::memory

namespace wand::daemon {

// LibTorch's caching allocator on one CUDA device (scheduler/exec/device_runtime.h).
struct AllocatorStats {
  std::uint64_t reserved_bytes = 0;
  std::uint64_t peak_reserved_bytes = 0;
};
using AllocatorStatsFn = std::function<AllocatorStats(int cuda_device)>;
using PlanFn = std::function<proto::PlanReport(const sched::JobSpec& spec)>;

class ResourceProvider {
 public:
  virtual ~ResourceProvider() = default;
  virtual proto::TiersReport tiers() = 0;
  virtual proto::PlanReport plan(const sched::JobSpec& spec) = 0;
};

// Plan answer of a provider given no PlanFn.
proto::PlanReport no_plan();

class ConfigResourceProvider : public ResourceProvider {
 public:
  // pool_config: the daemon's parsed memory section (DaemonConfig::pool_config(), copied);
  // null: none.
  explicit ConfigResourceProvider(const memory::PoolConfig* pool_config, PlanFn plan = {});
  proto::TiersReport tiers() override;
  proto::PlanReport plan(const sched::JobSpec& spec) override;

 private:
  const std::optional<memory::PoolConfig> pool_config_;  // immutable
  PlanFn plan_;
};

class PoolResourceProvider : public ResourceProvider {
 public:
  // pool: borrowed, outlives this. alloc: unset = allocator figures not reported.
  PoolResourceProvider(memory::MemoryPool& pool, AllocatorStatsFn alloc, PlanFn plan = {});
  // A note appended to every tiers answer (e.g. "memory config changed: restart to apply").
  void set_note(std::string note);
  // Where the tier sizes came from, set as every tier's "source": "config" (the memory
  // section) or "auto" (Note [Auto memory], auto_memory.h), default "config"; and each card's
  // whole budget by device index (Note [Card budget], config.h), reported as card_budget_bytes.
  void set_sizing(std::string source, std::map<int, std::uint64_t> card_budgets = {});
  proto::TiersReport tiers() override;
  proto::PlanReport plan(const sched::JobSpec& spec) override;

 private:
  memory::MemoryPool& pool_;
  AllocatorStatsFn alloc_;
  PlanFn plan_;
  std::mutex mu_;
  std::string note_;  // guarded by mu_
  std::string sizing_ = "config";  // guarded by mu_
  std::map<int, std::uint64_t> budgets_;  // guarded by mu_
};

}  // namespace wand::daemon
