#include "scheduler/job_queue.h"

#include <algorithm>

#include "common/error.h"
#include "common/log.h"
#include "scheduler/durable_file.h"

namespace wand::sched {

using nlohmann::json;

JobQueue::JobQueue(const std::filesystem::path& state_dir) {
  ensure_dir(state_dir);
  std::vector<json> records;
  journal_ = std::make_unique<Journal>(state_dir / "journal.jsonl", &records);
  auto path = journal_->path().string();
  std::size_t n = 0;
  for (const auto& rec : records) {
    ++n;
    std::string op = rec.value("op", "");
    if (op == "accept") {
      auto it = rec.find("job");
      if (it == rec.end()) throw Error(ErrorCode::kIo, path + ": record " + std::to_string(n) + ": accept without job");
      JobRecord r = job_record_from_json(*it);
      next_seq_ = std::max(next_seq_, r.seq + 1);
      jobs_[r.id] = std::move(r);
    } else if (op == "update") {
      std::string id = rec.value("id", "");
      auto it = jobs_.find(id);
      if (it == jobs_.end()) {
        throw Error(ErrorCode::kIo, path + ": record " + std::to_string(n) + ": update of unknown job '" + id + "'");
      }
      apply_job_progress(rec, it->second);
    } else {
      throw Error(ErrorCode::kIo, path + ": record " + std::to_string(n) + ": unknown op '" + op + "'");
    }
  }
  int resumed = 0;
  for (auto& [id, r] : jobs_) {
    if (r.phase == JobPhase::kRunning) {
      r.phase = JobPhase::kQueued;
      ++resumed;
    }
    if (r.cancel_requested && r.phase == JobPhase::kQueued) {
      r.phase = JobPhase::kCancelled;  // cancel was acknowledged before the crash
      r.finished_at = unix_now();
    }
  }
  std::vector<json> compact;
  std::vector<const JobRecord*> ordered;
  for (const auto& [_, r] : jobs_) ordered.push_back(&r);
  std::sort(ordered.begin(), ordered.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
  for (const JobRecord* r : ordered) compact.push_back({{"op", "accept"}, {"job", job_record_to_json(*r)}});
  journal_->rewrite(compact);
  log::get("sched")->info("journal replayed file={} records={} jobs={} interrupted={}", path,
                          records.size(), jobs_.size(), resumed);
}

std::string JobQueue::submit(JobSpec spec) {
  JobRecord r;
  {
    std::lock_guard<std::mutex> jl(journal_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      r.seq = next_seq_++;
    }
    r.id = "j-" + std::to_string(r.seq);
    r.total_steps = spec.steps;
    r.spec = std::move(spec);
    r.created_at = unix_now();
    journal_->append({{"op", "accept"}, {"job", job_record_to_json(r)}});
    std::lock_guard<std::mutex> lock(mu_);
    jobs_[r.id] = r;  // visible only once durable
  }
  cv_.notify_all();
  log::get("sched")->info("job accepted id={} model={} steps={} priority={} uid={}", r.id,
                          r.spec.model, r.spec.steps, r.spec.priority, r.spec.owner_uid);
  notify(r, "state");
  return r.id;
}

std::optional<JobRecord> JobQueue::get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

std::vector<JobRecord> JobQueue::list() const {
  std::vector<JobRecord> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [_, r] : jobs_) out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

void JobQueue::journal_update(const JobRecord& r) {
  json j = job_progress_to_json(r);
  j["op"] = "update";
  journal_->append(j);
}

template <class F>
JobRecord JobQueue::change(const std::string& id, F f) {
  std::lock_guard<std::mutex> jl(journal_mu_);
  JobRecord copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    JobRecord& r = jobs_.at(id);
    f(r);
    copy = r;
  }
  journal_update(copy);
  return copy;
}

std::optional<JobQueue::CancelOutcome> JobQueue::cancel(const std::string& id) {
  JobRecord copy;
  CancelOutcome out{};
  bool changed = false;
  {
    std::lock_guard<std::mutex> jl(journal_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(id);
      if (it == jobs_.end()) return std::nullopt;
      JobRecord& r = it->second;
      if (r.phase == JobPhase::kQueued) {
        r.phase = JobPhase::kCancelled;
        r.cancel_requested = true;
        r.finished_at = unix_now();
        changed = true;
        out = {r.phase, false};
      } else if (r.phase == JobPhase::kRunning) {
        changed = !r.cancel_requested;
        r.cancel_requested = true;
        auto t = running_.find(id);
        if (t != running_.end()) t->second->request(CancelToken::Reason::kCancel);
        out = {r.phase, true};
      } else {
        out = {r.phase, false};
      }
      copy = r;
    }
    if (changed) journal_update(copy);
  }
  if (changed) {
    log::get("sched")->info("job cancel id={} state={} pending={}", id, phase_name(out.phase), out.pending);
    notify(copy, "state");
  }
  return out;
}

bool JobQueue::has_queued_locked(const JobFilter& accept) const {
  for (const auto& [_, r] : jobs_) {
    if (r.phase == JobPhase::kQueued && (!accept || accept(r))) return true;
  }
  return false;
}

std::optional<JobQueue::Started> JobQueue::start_best_locked(const JobFilter& accept) {
  JobRecord* best = nullptr;
  for (auto& [_, r] : jobs_) {
    if (r.phase != JobPhase::kQueued) continue;
    if (accept && !accept(r)) continue;
    if (!best || r.spec.priority > best->spec.priority ||
        (r.spec.priority == best->spec.priority && r.seq < best->seq)) {
      best = &r;
    }
  }
  if (!best) return std::nullopt;
  best->phase = JobPhase::kRunning;
  best->started_at = unix_now();
  best->sec_per_step = 0;
  auto token = std::make_shared<CancelToken>();
  running_[best->id] = token;
  return Started{*best, token};
}

std::optional<JobQueue::Started> JobQueue::wait_next() { return wait_next(JobFilter{}); }

std::optional<JobQueue::Started> JobQueue::wait_next(const JobFilter& accept) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return closed_ || has_queued_locked(accept); });
      if (closed_) return std::nullopt;
    }
    if (auto s = try_next(accept)) return s;  // another taker may have raced us: wait again
  }
}

std::optional<JobQueue::Started> JobQueue::try_next() { return try_next(JobFilter{}); }

std::optional<JobQueue::Started> JobQueue::try_next(const JobFilter& accept) {
  std::optional<Started> s;
  {
    std::lock_guard<std::mutex> jl(journal_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return std::nullopt;
      s = start_best_locked(accept);
    }
    if (s) journal_update(s->record);
  }
  if (s) notify(s->record, "state");
  return s;
}

void JobQueue::record_start(const std::string& id, int resumed_from_step, const std::string& ran_on) {
  JobRecord copy = change(id, [&](JobRecord& r) {
    r.resumed_from_step = resumed_from_step;
    if (!ran_on.empty()) r.ran_on = ran_on;
    if (resumed_from_step >= 0) r.step = resumed_from_step;
  });
  notify(copy, "state");
}

void JobQueue::record_step(const std::string& id, int step, double sec_per_step) {
  JobRecord copy = change(id, [&](JobRecord& r) {
    r.step = step;
    r.sec_per_step = sec_per_step;
  });
  notify(copy, "step");
}

void JobQueue::record_stage(const std::string& id, const std::string& stage) {
  JobRecord copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.phase != JobPhase::kRunning || it->second.stage == stage) return;
    it->second.stage = stage;
    copy = it->second;
  }
  notify(copy, "stage");
}

void JobQueue::finish(const std::string& id, JobPhase phase, const std::string& error,
                      std::uint64_t result_bytes, const std::string& result_format, VideoShape video) {
  JobRecord copy = change(id, [&](JobRecord& r) {
    r.stage.clear();
    if (video.width > 0) {
      r.video_width = video.width;
      r.video_height = video.height;
      r.video_frames = video.frames;
    }
    r.phase = phase;
    r.error = error;
    r.finished_at = unix_now();
    r.result_bytes = result_bytes;
    r.result_format = result_format;
    running_.erase(id);
  });
  log::get("sched")->info("job finished id={} state={} steps={}{}", id, phase_name(phase), copy.step,
                          error.empty() ? "" : " error=" + error);
  notify(copy, "state");
}

void JobQueue::requeue(const std::string& id) {
  JobRecord copy = change(id, [&](JobRecord& r) {
    r.phase = JobPhase::kQueued;
    r.stage.clear();
    running_.erase(id);
  });
  cv_.notify_all();
  log::get("sched")->info("job requeued id={} step={}", id, copy.step);
  notify(copy, "state");
}

void JobQueue::stop_running() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [_, t] : running_) t->request(CancelToken::Reason::kShutdown);
}

void JobQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

void JobQueue::wake() {
  { std::lock_guard<std::mutex> lock(mu_); }  // a taker between its predicate and its wait sees the change
  cv_.notify_all();
}

int JobQueue::subscribe(JobListener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  int h = next_listener_++;
  listeners_[h] = std::move(listener);
  return h;
}

void JobQueue::unsubscribe(int handle) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.erase(handle);
}

void JobQueue::notify(const JobRecord& r, const std::string& kind) {
  std::vector<JobListener> ls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [_, l] : listeners_) ls.push_back(l);
  }
  for (const auto& l : ls) l(r, kind);
}

JobQueue::Counts JobQueue::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  Counts c;
  for (const auto& [_, r] : jobs_) {
    switch (r.phase) {
      case JobPhase::kQueued: ++c.queued; break;
      case JobPhase::kRunning: ++c.running; break;
      case JobPhase::kDone: ++c.done; break;
      case JobPhase::kFailed: ++c.failed; break;
      case JobPhase::kCancelled: ++c.cancelled; break;
    }
  }
  return c;
}

}  // namespace wand::sched
