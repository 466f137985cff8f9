#include "scheduler/job_queue.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "common/error.h"
#include "common/log.h"
#include "scheduler/durable_file.h"

namespace wand::sched {

using nlohmann::json;

namespace {

// Note [Crash starts] and Note [Journal compaction] (JobQueue::JobQueue).
constexpr int kCrashStartLimit = 2;
constexpr std::size_t kCompactSlack = 256;

// 64 random bits as hex (Note [Job identity], job_record.h).
std::string random_nonce() {
  static std::mutex mu;
  static std::mt19937_64 gen{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(gen()));
  return buf;
}

}  // namespace

// Note [Inputs out of the journal]: an input image is stored once, in
// <state_dir>/inputs/<id>.img (atomic, before the accept record), and the accept
// record names it instead of carrying it in base64: the journal stays small (it is
// read at every start and compacted now and then), and `list` never copies images.
// The file is removed when the job ends.
json JobQueue::accept_record(const JobRecord& r) const {
  json j = job_record_to_json(r);
  if (!r.spec.image.empty()) {
    j["spec"].erase("image_b64");
    j["spec"]["image_file"] = r.id + ".img";
    j["spec"]["image_bytes"] = r.spec.image.size();
  }
  return {{"op", "accept"}, {"job", j}};
}

std::filesystem::path JobQueue::input_path(const std::string& id) const { return inputs_dir_ / (id + ".img"); }

JobQueue::JobQueue(const std::filesystem::path& state_dir) : inputs_dir_(state_dir / "inputs") {
  ensure_dir(state_dir);
  ensure_dir(inputs_dir_);
  remove_temp_files(inputs_dir_);
  std::vector<std::string> with_image_file;
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
      if (it->contains("spec") && (*it)["spec"].contains("image_file")) with_image_file.push_back(r.id);
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
  for (const std::string& id : with_image_file) {  // Note [Inputs out of the journal]
    JobRecord& r = jobs_.at(id);
    std::error_code ec;
    if (is_terminal(r.phase)) {
      std::filesystem::remove(input_path(id), ec);
    } else if (std::filesystem::exists(input_path(id), ec)) {
      r.spec.image = read_file(input_path(id));
    } else {
      r.phase = JobPhase::kFailed;  // cannot run without it; say so instead of failing later
      r.finished_at = unix_now();
      r.error = "input image " + input_path(id).string() + " is missing";
    }
  }
  int resumed = 0, crashed = 0;
  std::vector<JobRecord> crash_failed;
  for (auto& [id, r] : jobs_) {
    if (r.phase == JobPhase::kRunning) {
      // Note [Crash starts]: the daemon died while the job ran. crash_starts counts
      // the starts since the job last made progress (+1 at each start, 1 again at each
      // completed step, 0 at a clean requeue), so it is the number of deaths in a row
      // without a completed step. At kCrashStartLimit the job is the likely cause (a
      // poison job: an out-of-memory kill at the same point every time): it fails
      // instead of taking the daemon down at every restart.
      if (r.crash_starts >= kCrashStartLimit) {
        r.phase = JobPhase::kFailed;
        r.finished_at = unix_now();
        r.error = "crashed the daemon: wand died while this job ran " + std::to_string(r.crash_starts) +
                  " times in a row; it is not resumed again";
        crash_failed.push_back(r);
        ++crashed;
        continue;
      }
      r.phase = JobPhase::kQueued;
      ++resumed;
    }
    if (r.cancel_requested && r.phase == JobPhase::kQueued) {
      r.phase = JobPhase::kCancelled;  // cancel was acknowledged before the crash
      r.finished_at = unix_now();
    }
  }
  // Note [Journal compaction]: the journal is rewritten (one record per job) only when
  // it has grown well past the job count, not at every start: a start on a full disk
  // must not need the space for a whole new copy, and what replay derives (running ->
  // queued, an acknowledged cancel) is derived again at the next start anyway. A
  // rewrite that fails for lack of space is skipped (the old journal stays valid).
  const bool compact_now = records.size() > 2 * jobs_.size() + kCompactSlack;
  if (compact_now) {
    std::vector<json> compact;
    std::vector<const JobRecord*> ordered;
    for (const auto& [_, r] : jobs_) ordered.push_back(&r);
    std::sort(ordered.begin(), ordered.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
    for (const JobRecord* r : ordered) compact.push_back(accept_record(*r));
    try {
      journal_->rewrite(compact);
    } catch (const DiskFullError& e) {
      log::get("sched")->warn("journal compaction skipped (disk full) file={} error=\"{}\"", path, e.what());
    }
  } else {
    for (const JobRecord& r : crash_failed) {
      try {
        journal_update(r);
      } catch (const DiskFullError& e) {  // derived again at the next start
        log::get("sched")->warn("journal append skipped (disk full) id={} error=\"{}\"", r.id, e.what());
      }
    }
  }
  for (const JobRecord& r : crash_failed) {
    log::get("sched")->error("job failed id={} error=\"{}\"", r.id, r.error);
  }
  log::get("sched")->info("journal replayed file={} records={} jobs={} interrupted={} crash_failed={} compacted={}",
                          path, records.size(), jobs_.size(), resumed, crashed, compact_now);
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
    r.nonce = random_nonce();
    if (!r.spec.image.empty()) write_file_atomic(input_path(r.id), r.spec.image);  // DiskFullError: not accepted
    try {
      journal_->append(accept_record(r));
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove(input_path(r.id), ec);
      throw;
    }
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

// Note [Disk full]: the change is journaled before the table shows it, so a journal
// append that fails (DiskFullError) leaves the job as it was, in memory and on disk.
template <class F>
JobRecord JobQueue::change(const std::string& id, F f) {
  std::lock_guard<std::mutex> jl(journal_mu_);
  JobRecord copy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    copy = jobs_.at(id);
  }
  f(copy);
  journal_update(copy);  // every change takes journal_mu_: nobody changed the job meanwhile
  std::lock_guard<std::mutex> lock(mu_);
  jobs_[id] = copy;
  return copy;
}

std::optional<JobQueue::CancelOutcome> JobQueue::cancel(const std::string& id) {
  JobRecord copy, before;
  CancelOutcome out{};
  bool changed = false;
  {
    std::lock_guard<std::mutex> jl(journal_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = jobs_.find(id);
      if (it == jobs_.end()) return std::nullopt;
      JobRecord& r = it->second;
      before = r;
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
    if (changed) {
      try {
        journal_update(copy);
      } catch (...) {  // Note [Disk full]: not cancelled after all; the caller gets the error
        std::lock_guard<std::mutex> lock(mu_);
        jobs_[id] = before;
        throw;
      }
    }
  }
  if (changed && out.phase == JobPhase::kCancelled) {
    std::error_code ec;
    std::filesystem::remove(input_path(id), ec);  // Note [Inputs out of the journal]
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
  ++best->crash_starts;  // Note [Crash starts]: cleared again by a clean requeue
  best->sec_per_step = 0;
  auto token = std::make_shared<CancelToken>();
  // A job paused (Note [Disk full]) after its cancel was acknowledged still stops.
  if (best->cancel_requested) token->request(CancelToken::Reason::kCancel);
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
    if (s) {
      try {
        journal_update(s->record);
      } catch (...) {  // Note [Disk full]: the job stays queued; the taker gets the error
        std::lock_guard<std::mutex> lock(mu_);
        JobRecord& r = jobs_.at(s->record.id);
        r.phase = JobPhase::kQueued;
        --r.crash_starts;
        running_.erase(r.id);
        throw;
      }
    }
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
    r.crash_starts = 1;  // progress: a death from now on is the first without one (Note [Crash starts])
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
  });
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(id);
    jobs_.at(id).spec.image.clear();  // Note [Inputs out of the journal]
    jobs_.at(id).spec.image.shrink_to_fit();
  }
  std::error_code ec;
  std::filesystem::remove(input_path(id), ec);
  log::get("sched")->info("job finished id={} state={} steps={}{}", id, phase_name(phase), copy.step,
                          error.empty() ? "" : " error=" + error);
  notify(copy, "state");
}

void JobQueue::requeue(const std::string& id) {
  JobRecord copy = change(id, [&](JobRecord& r) {
    r.phase = JobPhase::kQueued;
    r.stage.clear();
    r.crash_starts = 0;  // a clean stop, not a crash (Note [Crash starts])
  });
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(id);
  }
  cv_.notify_all();
  log::get("sched")->info("job requeued id={} step={}", id, copy.step);
  notify(copy, "state");
}

void JobQueue::pause(const std::string& id, const std::string& why) {
  JobRecord copy;
  {
    std::lock_guard<std::mutex> jl(journal_mu_);
    std::lock_guard<std::mutex> lock(mu_);
    JobRecord& r = jobs_.at(id);
    r.phase = JobPhase::kQueued;
    r.crash_starts = 0;
    r.error = why;
    running_.erase(id);
    copy = r;
  }
  try {
    std::lock_guard<std::mutex> jl(journal_mu_);
    journal_update(copy);
  } catch (const Error& e) {  // the disk is still full: replay makes it queued anyway
    log::get("sched")->debug("job pause not journaled id={} error=\"{}\"", id, e.what());
  }
  cv_.notify_all();
  log::get("sched")->warn("job paused id={} step={} why=\"{}\"", id, copy.step, why);
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
