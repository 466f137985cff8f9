// FitAdvice: what to change when a job fits no card as configured. For each card: why it
// does not fit with its fixed device tier, the device tier with which it would (the
// planner's own choice for that budget), or the card budget the job needs at the least;
// and the strategy planner v2 would choose with those tiers. `wanctl plan` prints it.
//
//   FitAdvice a = advise_fit(shape, spec, machine, cal);
//   for (const auto& line : a.lines) puts(line.c_str());   // "device 0: set memory.devices[0].bytes ..."
//   nlohmann::json j = a.to_json();                        // {"cards": [...], "strategy": ..., "advice": [...]}
//
// Note [Fit advice]: the recommended tier of a card is recommended_device_tier_bytes of the
// card's plan with its tier free (DeviceSpec::tier_bytes = 0): the prefetch window + the block
// being released + as many resident blocks as the budget holds beside the context, the
// non-block weights and the activations of the chunk the planner picks, so a tier of that
// size, fixed, plans within the budget again (checked: the advice plans it fixed and quotes
// that peak). A card where even two block slots do not fit is given the smallest budget that
// would hold them: context + non-block weights + activations in the smallest chunk + 2
// blocks. Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/job_spec.h"
#include "scheduler/plan/multi_planner.h"

namespace wand::sched::plan {

struct CardAdvice {
  int device = 0;
  std::uint64_t budget_bytes = 0;
  std::uint64_t tier_bytes = 0;           // as configured (0: not fixed)
  bool fits = false;                      // with the configured tier
  std::string reason;                     // why not (the planner's numbers), when !fits
  std::uint64_t recommended_tier_bytes = 0;  // Note [Fit advice]; 0: no tier fits this budget
  std::uint64_t peak_with_recommended = 0;   // the plan's peak with that tier fixed
  std::uint64_t min_budget_bytes = 0;        // when no tier fits: the budget the job needs
  nlohmann::json to_json() const;
};

struct FitAdvice {
  std::vector<CardAdvice> cards;
  std::string strategy;                   // planner v2's choice with the recommended tiers ("": none)
  std::vector<int> strategy_devices;
  double strategy_step_s = 0, strategy_job_s = 0;
  std::vector<std::string> lines;         // what to change, one line each
  nlohmann::json to_json() const;
};

FitAdvice advise_fit(const ModelShape& m, const JobSpec& spec, const MachineSpec& mc, const Calibration& cal);

}  // namespace wand::sched::plan
