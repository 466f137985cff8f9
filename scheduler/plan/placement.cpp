#include "scheduler/plan/placement.h"

#include <algorithm>
#include <cstdio>

#include "common/log.h"
#include "scheduler/multigpu/parallel_strategy.h"
#include "scheduler/plan/planner.h"

namespace wand::sched::plan {

namespace {

ModelEntry entry_of(const PipelineRegistry& registry, const std::string& model) {
  ModelEntry entry;
  for (const auto& m : registry.models()) {
    if (m.name == model) entry = m;
  }
  return entry;
}

const ModelShape& shape_of(std::map<std::string, ModelShape>& shapes, const ModelEntry& entry) {
  auto s = shapes.find(entry.dir.string());
  if (s == shapes.end()) s = shapes.emplace(entry.dir.string(), model_shape_from_dir(entry.dir)).first;
  return s->second;
}

std::string names_of(const std::vector<DeviceSlot>& slots) {
  std::string s;
  for (const auto& d : slots) s += (s.empty() ? "" : ",") + d.name;
  return s;
}

std::string job_text(const JobSpec& spec) {
  return spec.model + " " + std::to_string(spec.width) + "x" + std::to_string(spec.height) + "x" +
         std::to_string(spec.frames);
}

}  // namespace

PeakPlanner::PeakPlanner(const MachineSpec& machine, Calibration cal, const PipelineRegistry& registry,
                         std::vector<DeviceSlot> slots)
    : registry_(registry), slots_(std::move(slots)), cal_(std::move(cal)) {
  std::sort(slots_.begin(), slots_.end(),
            [](const DeviceSlot& a, const DeviceSlot& b) { return a.vram_budget_bytes < b.vram_budget_bytes; });
  // Each card with its fixed device tier, as `wanctl plan` plans it (Note [Fixed tier], card_plan.h).
  for (const auto& d : machine.devices) devices_[d.index] = d;
}

std::uint64_t PeakPlanner::operator()(const JobSpec& spec) {
  const ModelEntry entry = entry_of(registry_, spec.model);
  if (entry.factory != "wan") return 0;  // unknown model (prepare fails it) or not planned
  const std::string key = spec.model + "|" + entry.dir.string() + "|" + spec.task + "|" + std::to_string(spec.width) +
                          "x" + std::to_string(spec.height) + "x" + std::to_string(spec.frames);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) it = cache_.emplace(key, estimate(entry, spec)).first;
  if (!it->second.error.empty()) throw Error(it->second.code, it->second.error);
  return it->second.peak;
}

PeakPlanner::Result PeakPlanner::estimate(const ModelEntry& entry, const JobSpec& spec) {
  Result r;
  try {
    const ModelShape& shape = shape_of(shapes_, entry);
    std::string last, cards;
    for (const DeviceSlot& slot : slots_) {  // smallest budget first
      if (!cards.empty()) cards += ", ";
      cards += slot.name + " " + format_bytes(slot.vram_budget_bytes);
      try {
        DeviceSpec dev{slot.index, slot.vram_budget_bytes, 0};
        auto d = devices_.find(slot.index);
        if (d != devices_.end()) dev.tier_bytes = d->second.tier_bytes;
        r.peak = predicted_peak_bytes(shape, spec, dev, cal_);
        return r;
      } catch (const Error& e) {
        last = e.what();
      }
    }
    r.error = "job (" + std::to_string(spec.width) + "x" + std::to_string(spec.height) + ", " +
              std::to_string(spec.frames) + " frames) is predicted too big for every card (" + cards +
              "); the planner on the biggest: " + last;
  } catch (const Error& e) {
    r.code = e.code();
    r.error = std::string("cannot plan the job: ") + e.what();
  } catch (const std::exception& e) {
    r.code = ErrorCode::kInternal;
    r.error = std::string("cannot plan the job: ") + e.what();
  }
  return r;
}

GroupPlanner::GroupPlanner(MachineSpec machine, Calibration cal, const PipelineRegistry& registry)
    : registry_(registry), cal_(std::move(cal)), machine_(std::move(machine)) {}

std::optional<DeviceGroup> GroupPlanner::operator()(const JobSpec& spec, const std::vector<DeviceSlot>& idle,
                                                    std::size_t waiting) {
  auto log = log::get("sched");
  if (waiting > 0) {
    log->debug("card group job={} waiting={} choice=one-card reason=\"other jobs wait: job-parallel\"", job_text(spec),
               waiting);
    return std::nullopt;
  }
  if (idle.size() < 2) return std::nullopt;  // nothing to choose
  const ModelEntry entry = entry_of(registry_, spec.model);
  if (entry.factory != "wan" || !registry_.can_group(spec.model)) return std::nullopt;  // not planned
  std::string key = spec.model + "|" + entry.dir.string() + "|" + spec.task + "|" + job_text(spec) + "|";
  // The guidance, sampler and steps decide whether a step has two branches (Note [Guidance 1]).
  key += spec.sampler + "|" + std::to_string(spec.steps) + "|" + (spec.shift ? std::to_string(*spec.shift) : "") + "|";
  for (double g : spec.guide_scale) key += std::to_string(g) + ",";
  key += "|";
  for (const auto& d : idle) key += std::to_string(d.index) + ",";
  Decision dec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) it = cache_.emplace(key, decide(entry, spec, idle)).first;
    dec = it->second;
  }
  if (!dec.group) {
    log->info("card group job={} idle={} waiting=0 choice=one-card reason=\"{}\"", job_text(spec), names_of(idle),
              dec.reason);
    return std::nullopt;
  }
  log->info("card group job={} idle={} waiting=0 choice={} reason=\"{}\"", job_text(spec), names_of(idle),
            dec.group->key(), dec.reason);
  return dec.group;
}

GroupPlanner::Decision GroupPlanner::decide(const ModelEntry& entry, const JobSpec& spec,
                                            const std::vector<DeviceSlot>& idle) {
  Decision d;
  try {
    const ModelShape& shape = shape_of(shapes_, entry);
    MachineSpec mc;
    mc.host_bytes = machine_.host_bytes;
    for (const auto& slot : idle) {
      for (const auto& dev : machine_.devices) {
        if (dev.index == slot.index) mc.devices.push_back(dev);
      }
    }
    if (mc.devices.size() < 2) {
      d.reason = "fewer than 2 idle cards in the memory section";
      return d;
    }
    const MultiPlan p = plan_multi(shape, {spec}, mc, cal_);
    const StrategyPrediction& c = p.choice;
    char step[32];
    std::snprintf(step, sizeof step, "%.3g", c.step_s);
    // Note [Guidance 1]: without an uncond branch the CFG splits were not candidates.
    const std::string no_cfg =
        p.geom.branches < 2 ? "; guidance 1 on every step: no uncond branch, so no CFG split" : "";
    if (c.strategy == "single" || c.devices.size() < 2) {
      d.reason = std::string("planner v2: one card is fastest (step ") + step + " s)" + no_cfg;
      return d;
    }
    const std::string name = strategy_from_plan(c.strategy);
    const int ranks = parse_strategy(name).ranks();
    if (ranks != static_cast<int>(c.devices.size())) {
      d.reason = "planner v2 chose " + c.strategy + " on " + std::to_string(c.devices.size()) + " cards, not " +
                 std::to_string(ranks);
      return d;
    }
    // The taking card (idle[0]) first: the runner runs the job on its worker.
    DeviceGroup g{{idle[0]}, name};
    bool has_taker = false;
    for (int index : c.devices) {
      if (index == idle[0].index) {
        has_taker = true;
        continue;
      }
      for (const auto& slot : idle) {
        if (slot.index == index) g.members.push_back(slot);
      }
    }
    if (!has_taker || g.members.size() != c.devices.size()) {
      d.reason = "planner v2 chose " + c.strategy + " without the taking card " + idle[0].name;
      return d;
    }
    d.reason = "planner v2 latency choice, step " + std::string(step) + " s" + no_cfg;
    d.group = std::move(g);
  } catch (const std::exception& e) {
    d.reason = std::string("cannot plan: ") + e.what();
    log::get("sched")->warn("card group planning failed job={} error=\"{}\" action=one-card", job_text(spec),
                            e.what());
  }
  return d;
}

std::string strategy_from_plan(const std::string& planner_name) {
  const std::string prefix = "cfg-x-ulysses-";
  if (planner_name.rfind(prefix, 0) == 0) return "cfg2xulysses-" + planner_name.substr(prefix.size());
  return planner_name;
}

}  // namespace wand::sched::plan
