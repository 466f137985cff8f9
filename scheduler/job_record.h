// JobRecord: one job as the queue knows it (spec + lifecycle), and JobPhase, the
// lifecycle state: queued -> running -> done | failed | cancelled. A running job
// that is interrupted (crash, SIGTERM) goes back to queued and resumes from its
// last checkpointed step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "scheduler/job_spec.h"

namespace wand::sched {

enum class JobPhase { kQueued, kRunning, kDone, kFailed, kCancelled };

const char* phase_name(JobPhase phase);  // "queued", "running", ...
std::optional<JobPhase> phase_from_name(const std::string& name);
inline bool is_terminal(JobPhase p) {
  return p == JobPhase::kDone || p == JobPhase::kFailed || p == JobPhase::kCancelled;
}

struct JobRecord {
  std::string id;                  // "j-<seq>"
  std::uint64_t seq = 0;           // submission order (FIFO within a priority)
  JobSpec spec;
  JobPhase phase = JobPhase::kQueued;
  int step = 0;                    // completed denoising steps (checkpointed)
  int total_steps = 0;
  double created_at = 0;           // unix seconds
  double started_at = 0;
  double finished_at = 0;
  int resumed_from_step = -1;
  double sec_per_step = 0;         // this run's mean
  bool cancel_requested = false;
  std::string error;
  std::uint64_t result_bytes = 0;
  std::string result_format;
  // Where it ran: the card ("cuda:1") or card group ("cfg-parallel@0,1") of its last start
  // (journaled), and the video's real size once done (an i2v video follows the image's
  // aspect, so it may differ from spec.width x spec.height).
  std::string ran_on;
  int video_width = 0, video_height = 0, video_frames = 0;
  // Running: what it does now (Note [Job stages], job_runner.cpp). Not journaled: "" after a
  // restart until the job runs again.
  std::string stage;
  // Note [Job identity]: a random nonce drawn at submit; with the id and created_at it
  // names this job and no other (a checkpoint carries it and resumes only its own job,
  // even when a state dir was reset and ids are handed out again).
  std::string nonce;
  // Note [Crash starts]: how many times in a row the job was started and the daemon
  // then died under it (incremented at each start, cleared by a clean requeue).
  int crash_starts = 0;
  std::string identity() const { return nonce.empty() ? std::string() : id + "@" + std::to_string(created_at) + "#" + nonce; }
};

// The decoded video's size, recorded when a job finishes.
struct VideoShape {
  int width = 0, height = 0, frames = 0;
};

// Lifecycle fields only (no spec): what an "update" journal record carries.
nlohmann::json job_progress_to_json(const JobRecord& r);
void apply_job_progress(const nlohmann::json& j, JobRecord& r);  // throws Error(kIo)

nlohmann::json job_record_to_json(const JobRecord& r);  // progress + spec + seq
JobRecord job_record_from_json(const nlohmann::json& j);

double unix_now();

}  // namespace wand::sched
