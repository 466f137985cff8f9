// The pipeline factories wand_daemon knows without LibTorch: the deterministic
// fake (test) pipeline. The `wand` executable registers the Wan2.2 factory
// first (scheduler/wan/wan_pipeline.h, library wand_sched_wan), then these.
//
//   sched::PipelineRegistry reg;
//   sched::register_wan_pipeline(reg);    // when built with WAND_DAEMON_WAN
//   daemon::register_pipelines(reg);
#pragma once

#include "scheduler/pipeline_registry.h"

namespace wand::daemon {

void register_pipelines(sched::PipelineRegistry& registry);

}  // namespace wand::daemon
