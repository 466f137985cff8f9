#include "daemon/job_view.h"

namespace wand::daemon {

proto::JobInfo to_job_info(const sched::JobRecord& r) {
  proto::JobInfo j;
  j.id = r.id;
  j.state = sched::phase_name(r.phase);
  j.step = r.step;
  j.total_steps = r.total_steps;
  j.model = r.spec.model;
  j.task = r.spec.task;
  j.prompt = r.spec.prompt;
  j.width = r.spec.width;
  j.height = r.spec.height;
  j.frames = r.spec.frames;
  j.seed = r.spec.seed;
  j.priority = r.spec.priority;
  j.owner_uid = r.spec.owner_uid;
  j.created_at = r.created_at;
  j.started_at = r.started_at;
  j.finished_at = r.finished_at;
  j.resumed_from_step = r.resumed_from_step;
  j.sec_per_step = r.sec_per_step;
  j.eta_s = r.phase == sched::JobPhase::kRunning ? (r.total_steps - r.step) * r.sec_per_step : 0;
  j.cancel_requested = r.cancel_requested;
  j.error = r.error;
  j.result_bytes = r.result_bytes;
  j.result_format = r.result_format;
  j.stage = r.phase == sched::JobPhase::kRunning ? r.stage : "";
  j.ran_on = r.ran_on;
  j.video_width = r.video_width;
  j.video_height = r.video_height;
  j.video_frames = r.video_frames;
  return j;
}

}  // namespace wand::daemon
