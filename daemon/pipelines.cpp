#include "daemon/pipelines.h"

#include "common/error.h"
#include "scheduler/fake_pipeline.h"

namespace wand::daemon {

void register_pipelines(sched::PipelineRegistry& registry) {
  sched::register_fake_pipeline(registry);
}

sched::WanStreamContext wan_stream_context(const PipelineServices& s) {
  if (!s.streaming()) throw Error(ErrorCode::kInternal, "wan_stream_context: the daemon's pool has no device tier");
  sched::WanStreamContext c;
  c.pool = s.pool;
  c.device_tier = s.device_tier;
  c.cuda_device = s.cuda_device;
  c.run_dtype = s.executor.run_dtype;
  c.pack_dir = s.pack_dir;
  c.name = "wan";
  c.budget.budget_bytes = s.executor.device_budget;
  c.budget.context_bytes = s.executor.context_bytes;
  c.budget.activation_bytes = s.executor.activation_bytes;
  c.window_bytes = s.executor.window;
  c.host_window_bytes = s.executor.host_window;
  c.chunk_tokens = s.executor.chunk_tokens;
  c.weights_by_dir = s.weights_by_dir;
  for (const DeviceService& d : s.devices) {
    sched::WanStreamRank card;
    card.device_tier = d.tier;
    card.cuda_device = d.cuda_device;
    card.budget = c.budget;
    if (d.budget_bytes > 0) card.budget.budget_bytes = d.budget_bytes;
    c.cards[d.index] = card;
  }
  return c;
}

}  // namespace wand::daemon
