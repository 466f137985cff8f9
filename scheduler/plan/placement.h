// Placement policy: where the job runner runs a job, from the planner's predictions. The
// daemon wires these into sched::JobRunnerOptions (Note [Daemon slots], daemon/daemon.h);
// they know nothing of its configuration, only the machine it planned (each card's whole
// budget and fixed device tier, Note [Plan card budgets] in daemon/plan_service.cpp), the
// calibration and the registry's models.
//
//   PeakPlanner peak(machine, cal, registry, slots);
//   ro.estimator = [&](const JobSpec& s) { return peak(s); };        // may throw
//   GroupPlanner groups(machine, cal, registry);
//   std::optional<DeviceGroup> g = groups(spec, idle, waiting);       // "auto" card groups
//
// Both plan Wan models only (factory "wan"; the fake and other factories fit everywhere, on
// one card), read a model's headers once per directory, and cache their answers per job
// shape. Thread-safe (their own mutex); they borrow the registry (it must outlive them).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "scheduler/job_runner.h"
#include "scheduler/job_spec.h"
#include "scheduler/pipeline_registry.h"
#include "scheduler/plan/calibration.h"
#include "scheduler/plan/model_shape.h"
#include "scheduler/plan/multi_planner.h"

namespace wand::sched::plan {

// The runner's PeakEstimator (Note [Job placement], scheduler/job_runner.h): planner v1's
// predicted peak for the job on the smallest card (by slot budget) that can run it, each card
// with its fixed device tier from `machine` (Note [Fixed tier], card_plan.h). A job no card
// can run throws Error(kOutOfMemory) with the planner's message for the biggest card and every
// card's budget; a model the planner cannot read throws its own error ("cannot plan the job:
// ..."). Results and errors are cached per (model, dir, task, size, frames): the runner calls
// it under the queue's lock, so only the first job of a shape reads the model's headers.
class PeakPlanner {
 public:
  PeakPlanner(const MachineSpec& machine, Calibration cal, const PipelineRegistry& registry,
              std::vector<DeviceSlot> slots);
  std::uint64_t operator()(const JobSpec& spec);

 private:
  struct Result {
    std::uint64_t peak = 0;
    ErrorCode code = ErrorCode::kOutOfMemory;
    std::string error;  // non-empty: the job cannot run
  };
  Result estimate(const ModelEntry& entry, const JobSpec& spec);  // needs mu_

  const PipelineRegistry& registry_;
  std::vector<DeviceSlot> slots_;             // ascending budget; immutable
  const Calibration cal_;
  std::map<int, DeviceSpec> devices_;         // by card index; immutable
  std::mutex mu_;
  std::map<std::string, ModelShape> shapes_;  // model dir -> shape; guarded by mu_
  std::map<std::string, Result> cache_;       // guarded by mu_
};

// executor.parallel "auto" (Note [Daemon card groups], daemon/group_chooser.h): a job alone
// (none waiting) on >= 2 idle cards runs on the group plan_multi chooses for it with the idle
// cards of `machine` (their whole budgets and fixed tiers: what `wanctl plan` plans), when that
// is not "single" and includes the taking card (idle[0], first in the group); else nullopt
// (one card). Planning errors are logged, never thrown. Every decision is logged
// ("card group ... choice=...") and cached per (model, dir, task, size, frames, idle cards).
class GroupPlanner {
 public:
  GroupPlanner(MachineSpec machine, Calibration cal, const PipelineRegistry& registry);
  std::optional<DeviceGroup> operator()(const JobSpec& spec, const std::vector<DeviceSlot>& idle,
                                        std::size_t waiting);

 private:
  struct Decision {
    std::optional<DeviceGroup> group;
    std::string reason;
  };
  Decision decide(const ModelEntry& entry, const JobSpec& spec, const std::vector<DeviceSlot>& idle);  // needs mu_

  const PipelineRegistry& registry_;
  const Calibration cal_;
  const MachineSpec machine_;                 // every card, whole-card budgets
  std::mutex mu_;
  std::map<std::string, ModelShape> shapes_;  // model dir -> shape; guarded by mu_
  std::map<std::string, Decision> cache_;     // guarded by mu_
};

// planner v2's strategy name -> parse_strategy's ("cfg-x-ulysses-2" -> "cfg2xulysses-2";
// "single", "cfg-parallel", "ulysses-N" unchanged).
std::string strategy_from_plan(const std::string& planner_name);

}  // namespace wand::sched::plan
