// The pipeline factories wand_daemon knows without LibTorch: the deterministic fake (test)
// pipeline; and the context the `wand` executable registers the Wan2.2 factory with
// (scheduler/wan/wan_pipeline.h, library wand_sched_wan, which only the executable links).
//
//   sched::PipelineRegistry reg;
//   if (services.streaming()) sched::register_wan_pipeline(reg, wan_stream_context(services));
//   else sched::register_wan_pipeline(reg);          // resident
//   daemon::register_pipelines(reg);
#pragma once

#include "daemon/daemon.h"
#include "scheduler/pipeline_registry.h"
#include "scheduler/wan/wan_pipeline.h"  // WanStreamContext only (LibTorch-free header)

namespace wand::daemon {

void register_pipelines(sched::PipelineRegistry& registry);

// Note [One pool] (daemon.h): what a streamed Wan pipeline runs on, from the daemon's pool and
// cards: the executor section's budget, window and chunk settings, the first card's tier as
// the default, and every card by its memory.devices[] index (its tier, CUDA ordinal and
// whole-card budget, Note [Card budget]; a card without one keeps executor.device_budget),
// so register_wan_pipeline builds each slot's and each group member's pipeline on its own
// card (Note [Daemon slots]). Stores: left null, register_wan_pipeline makes the shared cache
// (Note [Daemon host copy], scheduler/wan/wan_pipeline.cpp). Requires services.streaming().
sched::WanStreamContext wan_stream_context(const PipelineServices& services);

}  // namespace wand::daemon
