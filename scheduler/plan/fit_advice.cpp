#include "scheduler/plan/fit_advice.h"

#include <cstdio>

#include "common/error.h"

namespace wand::sched::plan {

using nlohmann::json;

namespace {

std::string devices_text(const std::vector<int>& d) {
  std::string s;
  for (int x : d) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

}  // namespace

json CardAdvice::to_json() const {
  json j = {{"device", device}, {"budget_bytes", budget_bytes}, {"tier_bytes", tier_bytes}, {"fits", fits}};
  if (!fits) j["reason"] = reason;
  if (recommended_tier_bytes > 0) {
    j["recommended_device_tier_bytes"] = recommended_tier_bytes;
    j["peak_with_recommended_bytes"] = peak_with_recommended;
  }
  if (min_budget_bytes > 0) j["min_budget_bytes"] = min_budget_bytes;
  return j;
}

json FitAdvice::to_json() const {
  json cs = json::array();
  for (const auto& c : cards) cs.push_back(c.to_json());
  json j = {{"cards", cs}, {"advice", lines}};
  if (!strategy.empty()) {
    j["strategy"] = {{"strategy", strategy}, {"devices", strategy_devices}, {"step_s", strategy_step_s},
                     {"job_s", strategy_job_s}};
  }
  return j;
}

FitAdvice advise_fit(const ModelShape& m, const JobSpec& spec, const MachineSpec& mc, const Calibration& cal) {
  // Note [Fit advice].
  FitAdvice a;
  const JobGeometry g = job_geometry(m, spec);
  const std::uint64_t blk = m.max_block_run_bytes();
  MachineSpec fixed = mc;  // each card with its recommended tier where one exists
  for (std::size_t i = 0; i < mc.devices.size(); ++i) {
    const DeviceSpec& d = mc.devices[i];
    CardAdvice c;
    c.device = d.index;
    c.budget_bytes = d.budget_bytes;
    c.tier_bytes = d.tier_bytes;
    const CardPlan now = plan_card(m, g, d, cal, CardWork{});
    c.fits = now.feasible;
    if (!now.feasible) c.reason = now.reason;
    DeviceSpec free_tier = d;
    free_tier.tier_bytes = 0;
    const CardPlan p = plan_card(m, g, free_tier, cal, CardWork{});
    if (p.feasible) {
      c.recommended_tier_bytes = p.peak.weight_slots + p.peak.resident_blocks;
      DeviceSpec again = d;
      again.tier_bytes = c.recommended_tier_bytes;
      const CardPlan q = plan_card(m, g, again, cal, CardWork{});
      c.peak_with_recommended = q.feasible ? q.peak.total() : p.peak.total();
      fixed.devices[i].tier_bytes = c.recommended_tier_bytes;
    } else {
      // The smallest chunk's activations (the last candidate the planner tried) + 2 blocks.
      c.min_budget_bytes = p.peak.context + p.peak.non_block + p.peak.activations + 2 * blk;
    }
    a.cards.push_back(c);
  }
  // What v2 chooses with those tiers (cards without one keep theirs and stay out).
  try {
    const MultiPlan mp = plan_multi(m, {spec}, fixed, cal);
    a.strategy = mp.choice.strategy;
    a.strategy_devices = mp.choice.devices;
    a.strategy_step_s = mp.choice.step_s;
    a.strategy_job_s = mp.choice.times.job_s;
  } catch (const Error&) {
    // Nothing fits even with the recommended tiers: said per card below.
  }
  const std::string job = std::to_string(g.width) + "x" + std::to_string(g.height) + "x" + std::to_string(g.frames);
  for (std::size_t i = 0; i < a.cards.size(); ++i) {
    const CardAdvice& c = a.cards[i];
    const std::string f = "memory.devices[" + std::to_string(i) + "].bytes";
    if (c.fits) continue;
    if (c.recommended_tier_bytes > 0) {
      a.lines.push_back("device " + std::to_string(c.device) + ": set the device tier (" + f + ", now " +
                        format_bytes(c.tier_bytes) + ") to " + format_bytes(c.recommended_tier_bytes) +
                        " or less: then " + job + " plans at " + format_bytes(c.peak_with_recommended) + " of its " +
                        format_bytes(c.budget_bytes) + " card budget");
    } else {
      a.lines.push_back("device " + std::to_string(c.device) + ": no device tier fits " + job + " in its " +
                        format_bytes(c.budget_bytes) + " card budget: it needs at least " +
                        format_bytes(c.min_budget_bytes) +
                        " (context + non-block weights + activations in the smallest chunk + two block slots); "
                        "a smaller size or fewer frames, or a strategy over several cards");
    }
  }
  if (!a.strategy.empty()) {
    a.lines.push_back("with those tiers the planner chooses " + a.strategy + " on device" +
                      (a.strategy_devices.size() > 1 ? "s " : " ") + devices_text(a.strategy_devices) + " (" +
                      seconds(a.strategy_step_s) + " per step, " + seconds(a.strategy_job_s) + " per job)");
  } else {
    a.lines.push_back("no strategy fits " + job + " on these cards even with the smallest tiers: raise the card "
                      "budgets (memory.devices[].budget), add cards, or ask for a smaller size or fewer frames");
  }
  return a;
}

}  // namespace wand::sched::plan
