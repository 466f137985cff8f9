// The pipeline factories this wand knows. The fake (test) pipeline is always
// there; model/ adds the Wan one here with one line (its factory probes a model
// directory in the release layout).
//
//   sched::PipelineRegistry reg;
//   daemon::register_pipelines(reg);
#pragma once

#include "scheduler/pipeline_registry.h"

namespace wand::daemon {

void register_pipelines(sched::PipelineRegistry& registry);

}  // namespace wand::daemon
