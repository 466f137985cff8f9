#include "daemon/pipelines.h"

#include "scheduler/fake_pipeline.h"

namespace wand::daemon {

void register_pipelines(sched::PipelineRegistry& registry) {
  // Wan2.2 pipelines (model/) register here, before the fake, e.g.:
  //   model::register_wan_pipeline(registry);
  sched::register_fake_pipeline(registry);
}

}  // namespace wand::daemon
