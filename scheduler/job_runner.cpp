#include "scheduler/job_runner.h"

#include <chrono>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "scheduler/durable_file.h"

#include "common/error.h"
#include "common/log.h"

namespace wand::sched {

namespace {

std::vector<DeviceSlot> slots_or_default(std::vector<DeviceSlot> slots) {
  if (slots.empty()) slots.push_back(DeviceSlot{});
  return slots;
}

}  // namespace

JobRunner::JobRunner(JobQueue& queue, PipelineRegistry& registry, CheckpointStore& store)
    : JobRunner(queue, registry, store, JobRunnerOptions{}) {}

JobRunner::JobRunner(JobQueue& queue, PipelineRegistry& registry, CheckpointStore& store, JobRunnerOptions options)
    : queue_(queue),
      registry_(registry),
      store_(store),
      slots_(slots_or_default(std::move(options.slots))),
      estimator_(std::move(options.estimator)),
      group_chooser_(std::move(options.group_chooser)),
      working_(slots_.size(), false) {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (slots_[i].index == slots_[j].index) {
        throw Error(ErrorCode::kConfig, "job runner: device slots " + slots_[j].name + " and " + slots_[i].name +
                                            " share index " + std::to_string(slots_[i].index));
      }
    }
  }
}

JobRunner::~JobRunner() { stop(); }

void JobRunner::start() {
  if (!threads_.empty()) return;
  exited_ = 0;
  for (std::size_t d = 0; d < slots_.size(); ++d) threads_.emplace_back([this, d] { loop(d); });
}

void JobRunner::request_stop() {
  {
    std::lock_guard<std::mutex> lock(pause_mu_);
    stopping_ = true;
  }
  pause_cv_.notify_all();
  queue_.close();
  queue_.stop_running();
}

void JobRunner::stop() {
  request_stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool JobRunner::stop_within(std::chrono::milliseconds grace) {
  request_stop();
  {
    std::unique_lock<std::mutex> lock(pause_mu_);
    const bool all = pause_cv_.wait_for(lock, grace, [&] { return exited_ == threads_.size(); });
    if (!all) {
      // Note [Stuck worker]: a job that ignores its cancel token (blocked in a call
      // that never returns) must not hold back shutdown: its thread is left behind
      // and the caller exits the process. Its job is "running" in the journal, so the
      // next start queues it again (and Note [Crash starts] counts it).
      for (auto& t : threads_) {
        if (t.joinable()) t.detach();
      }
      threads_.clear();
      return false;
    }
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  return true;
}

// Note [Disk full] (durable_file.h): a worker whose job had to pause for lack of
// space waits before it takes the next one (1 s, doubling to 30 s, reset by a job
// that ends normally), so a full disk is retried, never spun on.
void JobRunner::note_disk_full() {
  std::lock_guard<std::mutex> lock(pause_mu_);
  backoff_ms_ = backoff_ms_ == 0 ? 1000 : std::min(backoff_ms_ * 2, 30000);
  resume_after_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms_);
}

void JobRunner::note_progress() {
  std::lock_guard<std::mutex> lock(pause_mu_);
  backoff_ms_ = 0;
}

bool JobRunner::wait_out_pause() {
  std::unique_lock<std::mutex> lock(pause_mu_);
  pause_cv_.wait_until(lock, resume_after_, [&] { return stopping_; });
  return !stopping_;
}

void JobRunner::loop(std::size_t slot) {
  // One worker: a single-slot runner without an estimator takes every job (the
  // filter is empty, as before job-parallel).
  JobFilter accept;
  if (slots_.size() > 1 || estimator_) accept = [this, slot](const JobRecord& r) { return accepts(slot, r); };
  auto log = log::get("sched");
  while (wait_out_pause()) {
    std::optional<JobQueue::Started> started;
    try {
      started = queue_.wait_next(accept);
    } catch (const DiskFullError& e) {  // the job's start could not be journaled: it stays queued
      log->warn("worker paused slot={} error=\"{}\"", slots_[slot].name, e.what());
      note_disk_full();
      continue;
    } catch (const std::exception& e) {
      log->error("worker could not take a job slot={} error=\"{}\"", slots_[slot].name, e.what());
      note_disk_full();
      continue;
    }
    if (!started) break;
    try {
      run_one(*started, slot);
    } catch (const std::exception& e) {  // never std::terminate the daemon
      log->error("worker error slot={} id={} error=\"{}\"", slots_[slot].name, started->record.id, e.what());
      note_disk_full();
    }
  }
  {
    std::lock_guard<std::mutex> lock(pause_mu_);
    ++exited_;
  }
  pause_cv_.notify_all();
}

std::uint64_t JobRunner::peak_of(const JobRecord& record) {
  if (!estimator_) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peak_cache_.find(record.id);
  if (it != peak_cache_.end()) return it->second;
  const std::uint64_t peak = estimator_(record.spec);  // not cached when it throws
  peak_cache_[record.id] = peak;
  return peak;
}

bool JobRunner::fits_some_slot(std::uint64_t peak_bytes) const {
  for (const DeviceSlot& s : slots_) {
    if (fits(s, peak_bytes)) return true;
  }
  return false;
}

bool JobRunner::accepts(std::size_t slot, const JobRecord& record) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (claimed_.count(slot)) return false;  // Note [Card groups]: the card runs another job's ranks
  }
  std::uint64_t peak = 0;
  try {
    peak = peak_of(record);
  } catch (...) {
    return true;  // run_one fails it with the estimator's error
  }
  // Fits here; or fits nowhere (any worker fails it at once, Note [Job placement]).
  return fits(slots_[slot], peak) || !fits_some_slot(peak);
}

std::string JobRunner::slots_text() const {
  std::string s;
  for (const DeviceSlot& d : slots_) {
    if (!s.empty()) s += ", ";
    s += d.name + " " + (d.vram_budget_bytes ? format_bytes(d.vram_budget_bytes) : std::string("unlimited"));
  }
  return s;
}

std::size_t JobRunner::position_of(int index) const {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].index == index) return i;
  }
  return std::string::npos;
}

void JobRunner::check_group(const DeviceGroup& group, const std::vector<DeviceSlot>& idle, std::size_t slot) const {
  auto bad = [&](const std::string& why) {
    std::string names;
    for (const DeviceSlot& d : idle) names += (names.empty() ? "" : ", ") + d.name;
    throw Error(ErrorCode::kInternal, "job runner: the group chooser returned group " + group.key() + ", " + why +
                                          " (idle: " + names + "; taking: " + slots_[slot].name + ")");
  };
  if (group.members.size() < 2) bad("which has " + std::to_string(group.members.size()) + " member(s), not >= 2");
  bool has_taker = false;
  for (std::size_t i = 0; i < group.members.size(); ++i) {
    const int index = group.members[i].index;
    for (std::size_t j = 0; j < i; ++j) {
      if (group.members[j].index == index) bad("which names card " + std::to_string(index) + " twice");
    }
    bool is_idle = false;
    for (const DeviceSlot& d : idle) is_idle = is_idle || d.index == index;
    if (!is_idle) bad("whose card " + std::to_string(index) + " is not idle");
    has_taker = has_taker || index == slots_[slot].index;
  }
  if (!has_taker) bad("without the taking card " + std::to_string(slots_[slot].index));
}

std::optional<DeviceGroup> JobRunner::claim_group(const JobRecord& record, std::size_t slot) {
  if (!group_chooser_ || slots_.size() < 2) return std::nullopt;
  auto log = log::get("sched");
  constexpr int kTries = 3;
  for (int attempt = 1; attempt <= kTries; ++attempt) {
    std::vector<DeviceSlot> idle{slots_[slot]};
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (i != slot && !working_[i] && !claimed_.count(i)) idle.push_back(slots_[i]);
      }
    }
    const std::size_t waiting = static_cast<std::size_t>(queue_.counts().queued);
    std::optional<DeviceGroup> group = group_chooser_(record.spec, idle, waiting);  // throws: the job fails
    if (!group) return std::nullopt;
    check_group(*group, idle, slot);
    std::lock_guard<std::mutex> lock(mu_);
    bool free = true;
    for (const DeviceSlot& m : group->members) {
      const std::size_t p = position_of(m.index);
      if (p != slot && (p == std::string::npos || working_[p] || claimed_.count(p))) free = false;
    }
    if (free) {
      for (const DeviceSlot& m : group->members) {
        const std::size_t p = position_of(m.index);
        if (p != slot) claimed_[p] = record.id;
      }
      placements_[record.id] = group->key();
      return group;
    }
    log->info("job group lost a card id={} group={} try={}/{}", record.id, group->key(), attempt, kTries);
  }
  log->info("job group given up id={} action=one-card slot={}", record.id, slots_[slot].name);
  return std::nullopt;
}

void JobRunner::release(const std::string& id, std::size_t slot) {
  bool released = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    placements_.erase(id);
    peak_cache_.erase(id);
    working_[slot] = false;
    for (auto it = claimed_.begin(); it != claimed_.end();) {
      if (it->second == id) {
        it = claimed_.erase(it);
        released = true;
      } else {
        ++it;
      }
    }
  }
  if (released) queue_.wake();  // the released workers' filters accept again
}

std::map<std::string, std::string> JobRunner::placements() const {
  std::lock_guard<std::mutex> lock(mu_);
  return placements_;
}

void JobRunner::run_one(const JobQueue::Started& started, std::size_t slot) {
  const JobRecord& job = started.record;
  WAND_ASSERT(slot < slots_.size(), "run_one: slot position out of range");
  const DeviceSlot& device = slots_[slot];
  std::string claimer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = claimed_.find(slot);
    if (c != claimed_.end()) {
      claimer = c->second;
    } else {
      working_[slot] = true;
      placements_[job.id] = device.name;
    }
  }
  if (!claimer.empty()) {
    // Note [Card groups]: the card was claimed for another job's group after this take began.
    log::get("sched")->info("job handed back id={} slot={} claimed_by={}", job.id, device.name, claimer);
    queue_.requeue(job.id);
    return;
  }
  ++busy_;
  try {
    run_job(started, slot);
  } catch (...) {
    release(job.id, slot);
    --busy_;
    throw;
  }
  release(job.id, slot);
  --busy_;
  release_free_heap();
}

// Note [Heap after a job]: a job's host buffers (checkpoint blobs, the video's frames, the
// encoded file, LibTorch's CPU tensors) are freed when it ends, but glibc keeps freed heap
// pages (and raises its mmap threshold after large frees, so later buffers come from the
// heap too): the daemon's resident memory would creep up job after job beyond its tiers.
// After each job the free pages go back to the system.
void JobRunner::release_free_heap() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

void JobRunner::run_job(const JobQueue::Started& started, std::size_t slot) {
  const JobRecord& job = started.record;
  CancelToken& token = *started.token;
  auto log = log::get("sched");
  const DeviceSlot& device = slots_[slot];
  try {
    const std::uint64_t peak = peak_of(job);
    if (!fits(device, peak)) {
      throw Error(ErrorCode::kOutOfMemory,
                  "job " + job.id + " (" + std::to_string(job.spec.width) + "x" + std::to_string(job.spec.height) +
                      ", " + std::to_string(job.spec.frames) + " frames) needs a predicted device peak of " +
                      format_bytes(peak) + (fits_some_slot(peak) ? ", more than " + device.name + "'s budget" :
                                                                   ", more than any device's budget") +
                      " (" + slots_text() + ")");
    }
    const std::optional<DeviceGroup> group = claim_group(job, slot);  // Note [Card groups]
    if (group) {
      log->info("job placed id={} group={} taking_slot={} peak={}", job.id, group->key(), device.name,
                format_bytes(peak));
    } else if (estimator_ || slots_.size() > 1) {
      log->info("job placed id={} slot={} peak={} budget={}", job.id, device.name, format_bytes(peak),
                device.vram_budget_bytes ? format_bytes(device.vram_budget_bytes) : "unlimited");
    }
    // Note [Job stages]: a running job's JobRecord::stage says what it does now, for `watch`
    // and wanctl's progress line: "loading" (the pipeline, built on a model's first job:
    // minutes for an A14B), "encoding" (text, image, noise), "denoising", "switching expert"
    // (the first step on the other A14B expert, whose blocks are read then), "decoding" (the
    // VAE), "writing" (encoding the file, saving the result). Changes are published without
    // a journal write (record_stage), so they cost no fsync.
    queue_.record_stage(job.id, "loading");
    std::shared_ptr<Pipeline> pipeline =
        group ? registry_.pipeline(job.spec.model, *group) : registry_.pipeline(job.spec.model, device);
    queue_.record_stage(job.id, "encoding");
    int resumed = -1;
    std::optional<Checkpoint> ckpt;
    try {
      ckpt = store_.load(job.id, job.identity());
    } catch (const Error& e) {
      log->warn("checkpoint unreadable id={} error=\"{}\" action=restart", job.id, e.what());
    }
    // A resumed job skips the work its checkpoint holds (Pipeline::resume).
    std::unique_ptr<JobState> state =
        ckpt ? pipeline->resume(job.spec, ckpt->blobs, token) : pipeline->prepare(job.spec, token);
    if (ckpt) {
      resumed = pipeline->completed_steps(*state);
      log->info("job resumed id={} step={}", job.id, resumed);
    }
    queue_.record_start(job.id, resumed, group ? group->key() : device.name == "default" ? "" : device.name);
    const int total = pipeline->total_steps(*state);
    const std::vector<std::string> experts = pipeline->step_experts(*state);
    int run_steps = 0;
    double run_seconds = 0;
    while (pipeline->completed_steps(*state) < total) {
      token.throw_if_cancelled();
      const std::size_t k = static_cast<std::size_t>(pipeline->completed_steps(*state));
      const bool switching = k > 0 && k < experts.size() && experts[k] != experts[k - 1];
      queue_.record_stage(job.id, switching ? "switching expert (" + experts[k] + ")" : "denoising");
      auto t0 = std::chrono::steady_clock::now();
      pipeline->step(*state, token);
      StateBlobs blobs;
      pipeline->save_state(*state, blobs);
      int done = pipeline->completed_steps(*state);
      store_.save(job.id, done, blobs, job.identity());
      run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++run_steps;
      queue_.record_step(job.id, done, run_seconds / run_steps);
    }
    queue_.record_stage(job.id, "decoding");
    Video video = pipeline->decode(*state, token);
    state.reset();
    queue_.record_stage(job.id, "writing");
    const VideoShape shape{video.width, video.height, video.frames};
    EncodedVideo file = registry_.encoder(job.spec.model)(std::move(video));
    store_.save_result(job.id, file);
    queue_.finish(job.id, JobPhase::kDone, "", file.bytes.size(), file.format, shape);
    store_.remove(job.id);
    note_progress();
  } catch (const DiskFullError& e) {
    pause_for_disk(job.id, e);
  } catch (const Error& e) {
    try {
      if (e.code() == ErrorCode::kCancelled && token.reason() == CancelToken::Reason::kShutdown) {
        queue_.requeue(job.id);  // the checkpoint stays for the next start
      } else if (e.code() == ErrorCode::kCancelled) {
        store_.remove(job.id);  // before the terminal state is visible
        queue_.finish(job.id, JobPhase::kCancelled, "");
      } else {
        log->error("job failed id={} error=\"{}\"", job.id, e.what());
        store_.remove(job.id);
        queue_.finish(job.id, JobPhase::kFailed, std::string(error_code_name(e.code())) + ": " + e.what());
      }
    } catch (const DiskFullError& e2) {
      pause_for_disk(job.id, e2);
    }
  } catch (const std::exception& e) {
    try {
      // Issue 15: LibTorch's out-of-memory (c10::OutOfMemoryError, "CUDA out of memory.
      // Tried to allocate ...") reaches the user as the typed error with the phase and
      // the first line (the sizes), not a c10 backtrace with addresses.
      std::string what = e.what();
      const bool oom = what.find("out of memory") != std::string::npos ||
                       what.find("OutOfMemory") != std::string::npos;
      if (oom) {
        // The phase is the job's stage (Note [Job stages]): an OOM while "decoding" at the
        // last step is the VAE's, not the last step's.
        const auto rec = queue_.get(job.id);
        const std::string stage = rec && !rec->stage.empty() ? rec->stage : "running";
        what = what.substr(0, what.find('\n'));
        what = std::string(error_code_name(ErrorCode::kOutOfMemory)) + ": while " + stage + ", at step " +
               std::to_string(rec ? rec->step : 0) + " of " + std::to_string(job.spec.steps) + ": " + what;
      } else if (what.find("Exception raised from") != std::string::npos) {
        what = what.substr(0, what.find("Exception raised from"));  // c10 appends the C++ backtrace
      }
      log->error("job failed id={} error=\"{}\"", job.id, e.what());
      store_.remove(job.id);
      queue_.finish(job.id, JobPhase::kFailed, what);
    } catch (const DiskFullError& e2) {
      pause_for_disk(job.id, e2);
    }
  }
}

void JobRunner::pause_for_disk(const std::string& id, const Error& e) {
  // Note [Disk full]: not the job's fault; it goes back to the queue with its
  // checkpoint and is retried once the worker's pause is over.
  queue_.pause(id, std::string("waiting for disk space: ") + e.what());
  note_disk_full();
}

}  // namespace wand::sched
