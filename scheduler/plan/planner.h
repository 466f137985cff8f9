// Planner v1: one job on one card. From the model's shape (model_shape.h), the job, the
// card's VRAM budget, the host budget and the calibration: prefetch depth, resident blocks,
// activation chunk, predicted seconds per expert forward / step / job (umT5 + steps + VAE,
// with the disk floor when the host tier cannot hold both experts), predicted peak VRAM by
// part, host bytes. Also the strategy row type shared with v2 (multi_planner.h).
//
//   ModelShape m = model_shape_from_dir(dir);
//   Calibration cal = Calibration::defaults();
//   SingleCardPlan p = plan_single_card(m, spec, {0, 22_GiB}, /*host_bytes=*/64_GiB, cal);  // throws kConfig
//   p.card.step_s;  p.card.peak.total();  p.times.job_s;
//   nlohmann::json j = p.to_json(m, cal);            // what `wanctl plan` prints
//   if (fits(m, spec, {1, 10_GiB}, cal)) ...          // for a job-parallel runner
//
// Impossible budgets throw Error(kConfig) naming the numbers (Note [Card plan] in card_plan.h).
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/job_spec.h"
#include "scheduler/plan/calibration.h"
#include "scheduler/plan/card_plan.h"
#include "scheduler/plan/cost_model.h"
#include "scheduler/plan/model_shape.h"

namespace wand::sched::plan {

// One strategy's prediction for one job (a row of `wanctl plan`).
struct StrategyPrediction {
  std::string strategy;            // "single" | "cfg-parallel" | "ulysses-N" | "cfg-x-ulysses-N"
  std::vector<int> devices;
  bool feasible = false;
  std::string reason;              // why not, when !feasible
  std::vector<CardPlan> cards;     // per device, same order
  double step_s = 0;               // slowest card
  double forward_s = 0;            // one expert forward (one branch), slowest card
  JobTimes times;
  nlohmann::json to_json(bool with_cards = false) const;
};

struct SingleCardPlan {
  JobGeometry geom;
  CardPlan card;
  HostPlan host;
  JobTimes times;
  StrategyPrediction row() const;
  nlohmann::json to_json(const ModelShape& m, const Calibration& cal) const;
};

SingleCardPlan plan_single_card(const ModelShape& m, const JobSpec& spec, const DeviceSpec& dev,
                                std::uint64_t host_bytes, const Calibration& cal);

// Peak VRAM of v1's plan for the job on the card (<= its budget); throws Error(kConfig)
// naming the numbers when the job cannot run there.
std::uint64_t predicted_peak_bytes(const ModelShape& m, const JobSpec& spec, const DeviceSpec& dev,
                                   const Calibration& cal);
// Whether the job can run on the card at all (the card plan is feasible).
bool fits(const ModelShape& m, const JobSpec& spec, const DeviceSpec& dev, const Calibration& cal);

// Notes every plan carries (unmeasured figures used, unmeasured chunk speeds, ...).
std::vector<std::string> plan_notes(const ModelShape& m, const Calibration& cal, const std::vector<CardPlan>& cards);

}  // namespace wand::sched::plan
