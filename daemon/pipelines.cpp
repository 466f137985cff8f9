#include "daemon/pipelines.h"

#include "scheduler/fake_pipeline.h"

namespace wand::daemon {

void register_pipelines(sched::PipelineRegistry& registry) {
  sched::register_fake_pipeline(registry);
}

}  // namespace wand::daemon
