#include "scheduler/pipeline.h"

namespace wand::sched {

JobState::~JobState() = default;
Pipeline::~Pipeline() = default;
void Pipeline::validate(const JobSpec&) const {}

}  // namespace wand::sched
