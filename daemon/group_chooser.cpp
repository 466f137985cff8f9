#include "daemon/group_chooser.h"

#include <memory>

#include "common/error.h"
#include "common/log.h"
#include "scheduler/multigpu/parallel_strategy.h"
#include "scheduler/plan/placement.h"

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
  const sched::ParallelStrategy strategy = sched::parse_strategy(name);
  const int ranks = strategy.ranks();
  const bool cfg_split = strategy.cfg_split();
  return [name, ranks, cfg_split, &registry](const sched::JobSpec& spec, const std::vector<sched::DeviceSlot>& idle,
                                             std::size_t waiting) -> std::optional<sched::DeviceGroup> {
    auto log = log::get("sched");
    // Note [Guidance 1] (model/sampler_schedule.h): a job that asks for guidance 1 on both
    // experts has no uncond branch; a CFG split would run the cond branch twice.
    bool unguided = !spec.guide_scale.empty();
    for (double g : spec.guide_scale) unguided = unguided && g == 1.0;
    if (cfg_split && unguided) {
      log->info("card group job={} idle={} waiting={} choice=one-card reason=\"guidance 1: executor.parallel {} "
                "splits the CFG branches and the job has no uncond branch\"",
                job_text(spec), names_of(idle), waiting, name);
      return std::nullopt;
    }
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

// LoRAs run on one card for now (Note [LoRA merge], model/lora.h: the factors live on the
// generator's card; a group's other ranks have none): a job with LoRAs never gets a group.
sched::GroupChooser one_card_with_loras(sched::GroupChooser inner) {
  return [inner = std::move(inner)](const sched::JobSpec& spec, const std::vector<sched::DeviceSlot>& idle,
                                    std::size_t waiting) -> std::optional<sched::DeviceGroup> {
    if (!spec.loras.empty()) {
      log::get("sched")->info("card group job={} idle={} waiting={} choice=one-card reason=\"LoRAs run on one card\"",
                              job_text(spec), names_of(idle), waiting);
      return std::nullopt;
    }
    return inner(spec, idle, waiting);
  };
}

}  // namespace

sched::GroupChooser make_group_chooser(const DaemonConfig& cfg, const PlanMachine& machine,
                                       const sched::PipelineRegistry& registry) {
  const std::string& mode = cfg.executor.parallel;
  auto log = log::get("rpc");
  if (mode == "off") {
    log->info("card groups off (executor.parallel \"off\"): one card per job");
    return {};
  }
  if (mode != "auto") {
    log->info("card groups: executor.parallel \"{}\" whenever {} cards are idle", mode,
              sched::parse_strategy(mode).ranks());
    return one_card_with_loras(forced_chooser(mode, registry));
  }
  if (!cfg.pool_config()) return {};
  log->info("card groups auto: a job alone on >= 2 idle cards runs as planner v2 chooses");
  // Note [Daemon card groups]: the machine `wanctl plan` plans (every card's whole budget and
  // fixed tier), the calibration read once.
  auto planner = std::make_shared<sched::plan::GroupPlanner>(machine.machine, plan_calibration(cfg), registry);
  return one_card_with_loras(
      [planner](const sched::JobSpec& spec, const std::vector<sched::DeviceSlot>& idle, std::size_t waiting) {
        return (*planner)(spec, idle, waiting);
      });
}

}  // namespace wand::daemon
