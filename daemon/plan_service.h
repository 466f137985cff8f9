// plan_service: the answer to a `plan` request. Builds the machine from the config's memory
// section (device budgets, host budget, disk), the calibration from
// <state_dir>/calibration.json when it exists (else the defaults, and the plan says so), the
// model shape from the model's directory in the registry, and runs planner v1 (one device)
// or v2 (several) from scheduler/plan.
//
//   proto::PlanReport r = plan_report(cfg, registry, spec);
//   r.available;   // false: r.note says why (no memory section, unknown model, a budget that
//                  // cannot run the job: the planner's message with the numbers)
//   r.plan;        // the planner's JSON (docs/planner.md), printed by `wanctl plan`
//
// Reads the model's config.json and safetensors headers (a few ms for the release: the
// headers are ~100 KB per shard), never the weights. Never throws for planning failures
// (they become available = false with the message); any thread.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "daemon/config.h"
#include "proto/responses.h"
#include "scheduler/job_spec.h"
#include "scheduler/pipeline_registry.h"
#include "scheduler/plan/multi_planner.h"

namespace wand::daemon {

proto::PlanReport plan_report(const DaemonConfig& cfg, const sched::PipelineRegistry& registry,
                              const sched::JobSpec& spec);

// The devices and host budget of a memory::PoolConfig JSON (throws Error(kConfig)).
sched::plan::MachineSpec machine_from_memory_config(const nlohmann::json& memory);

// <state_dir>/calibration.json
std::filesystem::path calibration_path(const DaemonConfig& cfg);

// The planner's calibration for the daemon: calibration_path(cfg) when it exists (else the
// defaults), with executor.context_bytes when set. *from_file (optional): whether the file
// was read. Throws Error(kConfig) for an unreadable file.
sched::plan::Calibration plan_calibration(const DaemonConfig& cfg, bool* from_file = nullptr);

// The machine of the memory section with whole-card budgets (Note [Plan card budgets],
// plan_service.cpp). *budget_source (optional): where the budgets came from, in words.
// Throws Error(kConfig) for a bad memory section.
sched::plan::MachineSpec plan_machine(const DaemonConfig& cfg, std::string* budget_source = nullptr);

}  // namespace wand::daemon
