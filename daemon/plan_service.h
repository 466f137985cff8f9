// plan_service: the answer to a `plan` request. Builds the machine from the config's memory
// section (device budgets, host budget, disk), the calibration from
// <state_dir>/calibration.json when it exists (else the defaults, and the plan says so), the
// model shape from the model's directory in the registry, and runs planner v1 (one device)
// or v2 (several) from scheduler/plan.
//
//   PlanMachine machine = plan_machine(cfg);                    // once, at start
//   proto::PlanReport r = plan_report(cfg, machine, registry, spec);
//   r.available;   // false: r.note says why (no memory section, unknown model, a budget that
//                  // cannot run the job: the planner's message with the numbers)
//   r.plan;        // the planner's JSON (docs/planner.md), printed by `wanctl plan`
//
// Reads the model's config.json and safetensors headers (a few ms for the release: the
// headers are ~100 KB per shard), never the weights. Never throws for planning failures
// (they become available = false with the message); any thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/config.h"
#include "proto/responses.h"
#include "scheduler/job_spec.h"
#include "scheduler/pipeline_registry.h"
#include "scheduler/plan/multi_planner.h"

namespace wand::daemon {

// The daemon's cards as the planner sees them (Note [Plan card budgets], plan_service.cpp):
// built once, at start, from the resolved memory section, and handed to the `plan` answers,
// the job placement (sched::plan::PeakPlanner) and the card-group choice
// (sched::plan::GroupPlanner), so all three plan the same machine.
struct PlanMachine {
  std::vector<CardBudget> cards;      // card_budgets(cfg): memory.devices[] order
  sched::plan::MachineSpec machine;   // per card: the whole budget and the fixed tier; the host tier
  std::string budget_source;          // where the budgets came from, in words (`wanctl plan`)
};

// Throws nothing for a config without a memory section (no cards, host 0).
PlanMachine plan_machine(const DaemonConfig& cfg);

// The `plan` answer for `spec` on `machine` (plan_machine(cfg), the daemon's once-built one).
proto::PlanReport plan_report(const DaemonConfig& cfg, const PlanMachine& machine,
                              const sched::PipelineRegistry& registry, const sched::JobSpec& spec);
// The same with plan_machine(cfg) (tests, one-off answers).
proto::PlanReport plan_report(const DaemonConfig& cfg, const sched::PipelineRegistry& registry,
                              const sched::JobSpec& spec);

// <state_dir>/calibration.json
std::filesystem::path calibration_path(const DaemonConfig& cfg);

// The planner's calibration for the daemon: calibration_path(cfg) when it exists (else the
// defaults), with executor.context_bytes when set. *from_file (optional): whether the file
// was read. Throws Error(kConfig) for an unreadable file.
sched::plan::Calibration plan_calibration(const DaemonConfig& cfg, bool* from_file = nullptr);

}  // namespace wand::daemon
