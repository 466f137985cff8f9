#include "daemon/job_view.h"

#include <algorithm>

namespace wand::daemon {

namespace {
// The prefix of a job paused for lack of space (sched::JobRunner::pause_for_disk).
constexpr const char* kWaitingForDisk = "waiting for disk space: ";
}  // namespace

void ServerPaths::add(const std::string& dir, const std::string& label) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  if (d.empty() || d == "/") return;  // "/" would hide every path of every message
  for (const auto& known : dirs) {
    if (known.first == d) return;  // the first label of a directory stays (the spool is also the pack dir)
  }
  dirs.emplace_back(d, label);
  // Longest first: a directory inside another one keeps its own label.
  std::stable_sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

std::string ServerPaths::hide(const std::string& message) const {
  std::string s = message;
  for (const auto& [dir, label] : dirs) {
    for (std::size_t at = s.find(dir); at != std::string::npos; at = s.find(dir, at)) {
      const std::size_t end = at + dir.size();
      // Whole path components only: "/srv/wand" is not the start of "/srv/wand2".
      if (end < s.size() && s[end] != '/' && s[end] != ':' && s[end] != ' ' && s[end] != '\'' && s[end] != '"' &&
          s[end] != ')' && s[end] != ',') {
        at = end;
        continue;
      }
      s.replace(at, dir.size(), label);
      at += label.size();
    }
  }
  return s;
}

nlohmann::json ServerPaths::hide_json(const nlohmann::json& j) const {
  if (j.is_string()) return hide(j.get<std::string>());
  if (!j.is_structured()) return j;
  nlohmann::json out = j;
  for (auto& v : out) v = hide_json(v);
  return out;
}

proto::JobEvent event_for(const Peer& peer, const ServerPaths& paths, proto::JobEvent ev) {
  if (peer.admin) return ev;
  if (!ev.job.error.empty()) ev.job.error = user_message(peer, paths, ev.job.error);
  ev.tiers = paths.hide_json(ev.tiers);
  return ev;
}

std::string disk_full_text(const std::string& error, const std::string& what) {
  // DiskFullError: "<what> <path>: <strerror>" (sched::throw_io_error); the cause is the last part.
  const std::size_t colon = error.rfind(": ");
  const std::string cause = colon == std::string::npos ? "no space left" : error.substr(colon + 2);
  return "the daemon's disk is full (" + cause + "); " + what;
}

std::string user_message(const Peer& peer, const ServerPaths& paths, const std::string& message) {
  if (peer.admin) return message;
  if (message.rfind(kWaitingForDisk, 0) == 0) {
    return kWaitingForDisk + disk_full_text(message, "the job goes on from its last checkpoint once there is room");
  }
  return paths.hide(message);
}

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

proto::JobInfo to_job_info(const sched::JobRecord& r, const Peer& peer, const ServerPaths& paths) {
  proto::JobInfo j = to_job_info(r);
  if (!j.error.empty()) j.error = user_message(peer, paths, j.error);
  return j;
}

}  // namespace wand::daemon
