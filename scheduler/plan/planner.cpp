#include "scheduler/plan/planner.h"

#include "common/error.h"

namespace wand::sched::plan {

using nlohmann::json;

json StrategyPrediction::to_json(bool with_cards) const {
  json j = {{"strategy", strategy}, {"devices", devices}, {"feasible", feasible}};
  if (!feasible) {
    j["reason"] = reason;
    return j;
  }
  json peak = json::array(), depth = json::array(), resident = json::array(), chunk = json::array();
  for (const auto& c : cards) {
    peak.push_back(c.peak.total());
    depth.push_back(c.prefetch_depth);
    resident.push_back(c.resident_blocks);
    chunk.push_back(c.chunk_tokens);
  }
  j["step_s"] = step_s;
  j["forward_s"] = forward_s;
  j["job_s"] = times.job_s;
  j["peak_bytes"] = peak;
  j["prefetch_depth"] = depth;
  j["resident_blocks"] = resident;
  j["chunk_tokens"] = chunk;
  j["bound"] = cards.empty() ? "" : cards.front().bound;
  for (const auto& c : cards) {
    if (c.bound == "pcie") j["bound"] = "pcie";
  }
  if (times.disk_floor_s > times.steps_s) j["bound"] = "disk";
  if (with_cards) {
    json cs = json::array();
    for (const auto& c : cards) cs.push_back(c.to_json());
    j["cards"] = cs;
    j["times"] = times.to_json();
  }
  return j;
}

StrategyPrediction SingleCardPlan::row() const {
  StrategyPrediction r;
  r.strategy = "single";
  r.devices = {card.device_index};
  r.feasible = card.feasible;
  r.reason = card.reason;
  r.cards = {card};
  r.step_s = card.step_s;
  r.forward_s = card.forward_s;
  r.times = times;
  return r;
}

std::vector<std::string> plan_notes(const ModelShape& m, const Calibration& cal, const std::vector<CardPlan>& cards) {
  std::vector<std::string> notes;
  for (const auto& n : cal.unmeasured()) {
    notes.push_back("calibration figure " + n + " is a placeholder, not a measurement");
  }
  for (const auto& c : cards) {
    if (c.feasible && !c.chunk_speed_measured) {
      notes.push_back("device " + std::to_string(c.device_index) + ": activation chunk " +
                      std::to_string(c.chunk_tokens) + " tokens is below the measured 16384: its speed is assumed");
    }
  }
  if (m.model_type == "ti2v") notes.push_back("VAE 2.2 decode time uses the VAE 2.1 rate (not measured)");
  notes.push_back("activations: the formula of sched::exec::dit_activation_bytes, not yet checked against a measured peak");
  notes.push_back("not modelled: embeddings / head / sampler time, the VAE decode's own VRAM (tiled to the budget)");
  return notes;
}

json SingleCardPlan::to_json(const ModelShape& m, const Calibration& cal) const {
  json notes = plan_notes(m, cal, {card});
  StrategyPrediction r = row();
  return {{"version", 1},
          {"model", m.to_json()},
          {"job", geom.to_json()},
          {"calibration", cal.to_json()},
          {"choice", r.to_json(/*with_cards=*/true)},
          {"strategies", json::array({r.to_json()})},
          {"host", host.to_json()},
          {"notes", notes}};
}

SingleCardPlan plan_single_card(const ModelShape& m, const JobSpec& spec, const DeviceSpec& dev, std::uint64_t host_bytes,
                                const Calibration& cal) {
  SingleCardPlan p;
  p.geom = job_geometry(m, spec);
  CardWork w;
  w.branches = p.geom.branches;  // 1 at guidance 1 (Note [Guidance 1], model/sampler_schedule.h)
  w.ranks = 1;
  w.streaming_cards = 1;
  p.card = plan_card(m, p.geom, dev, cal, w);
  if (!p.card.feasible) throw Error(ErrorCode::kConfig, "plan: " + p.card.reason);
  p.host = plan_host(m, p.geom, host_bytes, cal);
  discount_device_residency(p.host, {p.card});
  p.times = job_times(m, p.geom, p.host, cal, p.card.step_s, p.card.cold_step_s, p.card.cold_steps_per_job);
  return p;
}

std::uint64_t predicted_peak_bytes(const ModelShape& m, const JobSpec& spec, const DeviceSpec& dev, const Calibration& cal) {
  const JobGeometry g = job_geometry(m, spec);
  const CardPlan p = plan_card(m, g, dev, cal, CardWork{});
  if (!p.feasible) throw Error(ErrorCode::kConfig, "plan: " + p.reason);
  return p.peak.total();
}

bool fits(const ModelShape& m, const JobSpec& spec, const DeviceSpec& dev, const Calibration& cal) {
  const JobGeometry g = job_geometry(m, spec);
  return plan_card(m, g, dev, cal, CardWork{}).feasible;
}

}  // namespace wand::sched::plan
