// Group chooser: the daemon's answer to "one job on several cards?" (issue 7: throughput
// when many jobs wait, latency for a single one), from executor.parallel. The job runner
// calls it when a worker takes a job (Note [Card groups], scheduler/job_runner.h).
//
//   sched::JobRunnerOptions ro;  ro.slots = ...;
//   ro.group_chooser = make_group_chooser(cfg, machine, registry);   // empty for "off"
//   // "auto":          a job alone (none waiting) with >= 2 idle cards -> planner v2's
//   //                  latency choice among the idle cards, when it is not "single"
//   // "cfg-parallel":  (or any strategy name) on the first ranks() idle cards whenever that
//   //                  many are idle, else on one card
//
// Note [Daemon card groups]: "auto" (sched::plan::GroupPlanner, scheduler/plan/placement.h)
// asks sched::plan::plan_multi with one job and the idle
// cards as the machine (their whole-card budgets as the `plan` request's, Note [Plan card
// budgets] in plan_service.cpp; each card's device tier fixed at its memory.devices[].bytes),
// so the choice is the lowest predicted step time (within 1 %, fewer cards). It plans Wan
// models only (other factories: one card); the taking card must be among the chosen ones
// (the runner runs the job on its worker), else one card. A planning error is logged and the
// job runs on one card (the estimator, Note [Job placement], still checks that card).
// Decisions are cached per (model, dir, task, size, frames, idle cards). Every decision is
// logged ("card group ... choice=..."). A strategy name is used as given: a model the
// strategy cannot split (heads % Ulysses degree) fails when its group pipeline is built,
// naming both numbers.
// Thread-safe (the runner's workers call it at once); borrows the registry.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/plan_service.h"
#include "scheduler/job_runner.h"
#include "scheduler/pipeline_registry.h"

namespace wand::daemon {

// The runner's chooser for executor.parallel; an empty function for "off" (and for "auto"
// without a memory section). "auto" plans on `machine` (the daemon's cards, built once at
// start: Note [Plan card budgets], plan_service.cpp) with sched::plan::GroupPlanner
// (scheduler/plan/placement.h). `registry` must outlive it.
sched::GroupChooser make_group_chooser(const DaemonConfig& cfg, const PlanMachine& machine,
                                       const sched::PipelineRegistry& registry);

}  // namespace wand::daemon
