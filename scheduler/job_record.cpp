#include "scheduler/job_record.h"

#include <chrono>

#include "common/error.h"
#include "common/json_fields.h"

namespace wand::sched {

using nlohmann::json;

const char* phase_name(JobPhase p) {
  switch (p) {
    case JobPhase::kQueued: return "queued";
    case JobPhase::kRunning: return "running";
    case JobPhase::kDone: return "done";
    case JobPhase::kFailed: return "failed";
    case JobPhase::kCancelled: return "cancelled";
  }
  return "failed";
}

std::optional<JobPhase> phase_from_name(const std::string& n) {
  if (n == "queued") return JobPhase::kQueued;
  if (n == "running") return JobPhase::kRunning;
  if (n == "done") return JobPhase::kDone;
  if (n == "failed") return JobPhase::kFailed;
  if (n == "cancelled") return JobPhase::kCancelled;
  return std::nullopt;
}

json job_progress_to_json(const JobRecord& r) {
  json j = {{"id", r.id},
          {"phase", phase_name(r.phase)},
          {"step", r.step},
          {"total_steps", r.total_steps},
          {"created_at", r.created_at},
          {"started_at", r.started_at},
          {"finished_at", r.finished_at},
          {"resumed_from_step", r.resumed_from_step},
          {"sec_per_step", r.sec_per_step},
          {"cancel_requested", r.cancel_requested},
          {"error", r.error},
          {"result_bytes", r.result_bytes},
          {"result_format", r.result_format},
          {"crash_starts", r.crash_starts}};
  if (!r.ran_on.empty()) j["ran_on"] = r.ran_on;
  if (r.video_width > 0) {
    j["video_width"] = r.video_width;
    j["video_height"] = r.video_height;
    j["video_frames"] = r.video_frames;
  }
  return j;
}

void apply_job_progress(const json& j, JobRecord& r) {
  try {
    auto phase = phase_from_name(field<std::string>(j, "phase"));
    if (!phase) throw Error(ErrorCode::kBadRequest, "field 'phase': unknown phase");
    r.phase = *phase;
    r.step = field<int>(j, "step");
    r.total_steps = field<int>(j, "total_steps");
    r.created_at = field_or<double>(j, "created_at", r.created_at);
    r.started_at = field_or<double>(j, "started_at", 0);
    r.finished_at = field_or<double>(j, "finished_at", 0);
    r.resumed_from_step = field_or<int>(j, "resumed_from_step", -1);
    r.sec_per_step = field_or<double>(j, "sec_per_step", 0);
    r.cancel_requested = field_or<bool>(j, "cancel_requested", false);
    r.error = field_or<std::string>(j, "error", "");
    r.result_bytes = field_or<std::uint64_t>(j, "result_bytes", 0);
    r.result_format = field_or<std::string>(j, "result_format", "");
    r.ran_on = field_or<std::string>(j, "ran_on", "");
    r.video_width = field_or<int>(j, "video_width", 0);
    r.video_height = field_or<int>(j, "video_height", 0);
    r.video_frames = field_or<int>(j, "video_frames", 0);
    r.crash_starts = field_or<int>(j, "crash_starts", 0);
  } catch (const Error& e) {
    throw Error(ErrorCode::kIo, "job record " + r.id + ": " + e.what());
  }
}

json job_record_to_json(const JobRecord& r) {
  json j = job_progress_to_json(r);
  j["seq"] = r.seq;
  if (!r.nonce.empty()) j["nonce"] = r.nonce;
  j["spec"] = job_spec_to_json(r.spec);
  return j;
}

JobRecord job_record_from_json(const json& j) {
  JobRecord r;
  try {
    require_object(j, "job record");
    r.id = field<std::string>(j, "id");
    r.seq = field<std::uint64_t>(j, "seq");
    r.nonce = field_or<std::string>(j, "nonce", "");
    auto it = j.find("spec");
    if (it == j.end()) throw Error(ErrorCode::kBadRequest, "field 'spec' is missing");
    r.spec = job_spec_from_json(*it);
  } catch (const Error& e) {
    throw Error(ErrorCode::kIo, std::string("job record: ") + e.what());
  }
  apply_job_progress(j, r);
  return r;
}

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace wand::sched
