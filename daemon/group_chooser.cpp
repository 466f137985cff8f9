#include "daemon/group_chooser.h"

#include <map>
#include <memory>
#include <mutex>

#include "common/error.h"
#include "common/log.h"
#include "scheduler/multigpu/parallel_strategy.h"
#ifdef WAND_HAVE_PLAN_SERVICE
#include "daemon/plan_service.h"
#include "scheduler/plan/multi_planner.h"
#endif

namespace wand::daemon {

namespace {

std::string names_of(const std::vector<sched::DeviceSlot>& slots) {
  std::string s;
  for (const auto& d : slots) s += (s.empty() ? "" : ",") + d.name;
  return s;
}

std::string job_text(const sched::JobSpec& spec) {
  return spec.model + " " + std::to_string(spec.width) + "x" + std::to_string(spec.height) + "x" +
         std::to_string(spec.frames);
}

// A strategy name from the config: its first ranks() idle cards whenever that many are idle.
sched::GroupChooser forced_chooser(const std::string& name, const sched::PipelineRegistry& registry) {
  const int ranks = sched::parse_strategy(name).ranks();
  return [name, ranks, &registry](const sched::JobSpec& spec, const std::vector<sched::DeviceSlot>& idle,
                                  std::size_t waiting) -> std::optional<sched::DeviceGroup> {
    auto log = log::get("sched");
    if (!registry.can_group(spec.model)) {
      log->info("card group job={} idle={} waiting={} choice=one-card reason=\"its pipeline cannot run on several "
                "cards\"",
                job_text(spec), names_of(idle), waiting);
      return std::nullopt;
    }
    if (static_cast<int>(idle.size()) < ranks) {
      log->info("card group job={} idle={} waiting={} choice=one-card reason=\"executor.parallel {} needs {} idle "
                "cards, {} idle\"",
                job_text(spec), names_of(idle), waiting, name, ranks, idle.size());
      return std::nullopt;
    }
    sched::DeviceGroup g{{idle.begin(), idle.begin() + ranks}, name};
    log->info("card group job={} idle={} waiting={} choice={} reason=\"executor.parallel\"", job_text(spec),
              names_of(idle), waiting, g.key());
    return g;
  };
}

#ifdef WAND_HAVE_PLAN_SERVICE
// "auto": planner v2's latency choice for a job alone (Note [Daemon card groups]).
class AutoGroups {
 public:
  AutoGroups(const DaemonConfig& cfg, const sched::PipelineRegistry& registry)
      // plan_machine keeps each card's device tier at memory.devices[].bytes when the whole-card
      // budget is known (executor.device_budget; Note [Fixed tier]).
      : registry_(registry), cal_(plan_calibration(cfg)), machine_(plan_machine(cfg)) {}

  std::optional<sched::DeviceGroup> operator()(const sched::JobSpec& spec, const std::vector<sched::DeviceSlot>& idle,
                                               std::size_t waiting) {
    auto log = log::get("sched");
    if (waiting > 0) {
      log->debug("card group job={} waiting={} choice=one-card reason=\"other jobs wait: job-parallel\"",
                 job_text(spec), waiting);
      return std::nullopt;
    }
    if (idle.size() < 2) return std::nullopt;  // nothing to choose
    sched::ModelEntry entry;
    for (const auto& m : registry_.models()) {
      if (m.name == spec.model) entry = m;
    }
    if (entry.factory != "wan" || !registry_.can_group(spec.model)) return std::nullopt;  // not planned
    std::string key = spec.model + "|" + entry.dir.string() + "|" + spec.task + "|" + job_text(spec) + "|";
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

 private:
  struct Decision {
    std::optional<sched::DeviceGroup> group;
    std::string reason;
  };

  // Needs mu_ (the shapes cache).
  Decision decide(const sched::ModelEntry& entry, const sched::JobSpec& spec,
                  const std::vector<sched::DeviceSlot>& idle) {
    Decision d;
    try {
      auto s = shapes_.find(entry.dir.string());
      if (s == shapes_.end()) {
        s = shapes_.emplace(entry.dir.string(), sched::plan::model_shape_from_dir(entry.dir)).first;
      }
      sched::plan::MachineSpec mc;
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
      const sched::plan::MultiPlan p = sched::plan::plan_multi(s->second, {spec}, mc, cal_);
      const sched::plan::StrategyPrediction& c = p.choice;
      char step[32];
      std::snprintf(step, sizeof step, "%.3g", c.step_s);
      if (c.strategy == "single" || c.devices.size() < 2) {
        d.reason = std::string("planner v2: one card is fastest (step ") + step + " s)";
        return d;
      }
      const std::string name = strategy_from_plan(c.strategy);
      const int ranks = sched::parse_strategy(name).ranks();
      if (ranks != static_cast<int>(c.devices.size())) {
        d.reason = "planner v2 chose " + c.strategy + " on " + std::to_string(c.devices.size()) + " cards, not " +
                   std::to_string(ranks);
        return d;
      }
      // The taking card (idle[0]) first: the runner runs the job on its worker.
      sched::DeviceGroup g{{idle[0]}, name};
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
      d.reason = "planner v2 latency choice, step " + std::string(step) + " s";
      d.group = std::move(g);
    } catch (const std::exception& e) {
      d.reason = std::string("cannot plan: ") + e.what();
      log::get("sched")->warn("card group planning failed job={} error=\"{}\" action=one-card", job_text(spec),
                              e.what());
    }
    return d;
  }

  const sched::PipelineRegistry& registry_;
  const sched::plan::Calibration cal_;
  sched::plan::MachineSpec machine_;  // every card, whole-card budgets; immutable after construction
  std::mutex mu_;
  std::map<std::string, sched::plan::ModelShape> shapes_;  // model dir -> shape; guarded by mu_
  std::map<std::string, Decision> cache_;                  // guarded by mu_
};
#endif

}  // namespace

std::string strategy_from_plan(const std::string& planner_name) {
  const std::string prefix = "cfg-x-ulysses-";
  if (planner_name.rfind(prefix, 0) == 0) return "cfg2xulysses-" + planner_name.substr(prefix.size());
  return planner_name;
}

sched::GroupChooser make_group_chooser(const DaemonConfig& cfg, const sched::PipelineRegistry& registry) {
  const std::string& mode = cfg.executor.parallel;
  auto log = log::get("rpc");
  if (mode == "off") {
    log->info("card groups off (executor.parallel \"off\"): one card per job");
    return {};
  }
  if (mode != "auto") {
    log->info("card groups: executor.parallel \"{}\" whenever {} cards are idle", mode,
              sched::parse_strategy(mode).ranks());
    return forced_chooser(mode, registry);
  }
#ifdef WAND_HAVE_PLAN_SERVICE
  if (cfg.memory.is_null()) return {};
  log->info("card groups auto: a job alone on >= 2 idle cards runs as planner v2 chooses");
  auto planner = std::make_shared<AutoGroups>(cfg, registry);
  return [planner](const sched::JobSpec& spec, const std::vector<sched::DeviceSlot>& idle, std::size_t waiting) {
    return (*planner)(spec, idle, waiting);
  };
#else
  log->info("card groups auto: no planner in this build, one card per job");
  return {};
#endif
}

}  // namespace wand::daemon
