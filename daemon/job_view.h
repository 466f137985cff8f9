// How a sched::JobRecord is shown on the wire (proto::JobInfo), with the ETA
// derived from the run's mean seconds per step.
#pragma once

#include "proto/responses.h"
#include "scheduler/job_record.h"

namespace wand::daemon {

proto::JobInfo to_job_info(const sched::JobRecord& r);

}  // namespace wand::daemon
