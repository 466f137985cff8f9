#include "scheduler/pipeline.h"

namespace wand::sched {

JobState::~JobState() = default;
Pipeline::~Pipeline() = default;
void Pipeline::validate(const JobSpec&) const {}
std::vector<std::string> Pipeline::step_experts(const JobState&) const { return {}; }
std::unique_ptr<JobState> Pipeline::resume(const JobSpec& spec, const StateBlobs& in, CancelToken& token) {
  std::unique_ptr<JobState> state = prepare(spec, token);
  load_state(*state, in);
  return state;
}

}  // namespace wand::sched
