#include "scheduler/pipeline.h"

namespace wand::sched {

JobState::~JobState() = default;
Pipeline::~Pipeline() = default;
void Pipeline::validate(const JobSpec&) const {}
std::vector<std::string> Pipeline::step_experts(const JobState&) const { return {}; }

}  // namespace wand::sched
