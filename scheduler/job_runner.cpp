#include "scheduler/job_runner.h"

#include <chrono>

#include "common/error.h"
#include "common/log.h"

namespace wand::sched {

JobRunner::JobRunner(JobQueue& queue, PipelineRegistry& registry, CheckpointStore& store)
    : queue_(queue), registry_(registry), store_(store) {}

JobRunner::~JobRunner() { stop(); }

void JobRunner::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { loop(); });
}

void JobRunner::stop() {
  queue_.close();
  queue_.stop_running();
  if (thread_.joinable()) thread_.join();
}

void JobRunner::loop() {
  while (auto started = queue_.wait_next()) {
    run_one(*started);
  }
}

void JobRunner::run_one(const JobQueue::Started& started) {
  const JobRecord& job = started.record;
  CancelToken& token = *started.token;
  auto log = log::get("sched");
  busy_ = true;
  try {
    std::shared_ptr<Pipeline> pipeline = registry_.pipeline(job.spec.model);
    std::unique_ptr<JobState> state = pipeline->prepare(job.spec, token);
    int resumed = -1;
    std::optional<Checkpoint> ckpt;
    try {
      ckpt = store_.load(job.id);
    } catch (const Error& e) {
      log->warn("checkpoint unreadable id={} error=\"{}\" action=restart", job.id, e.what());
    }
    if (ckpt) {
      pipeline->load_state(*state, ckpt->blobs);
      resumed = pipeline->completed_steps(*state);
      log->info("job resumed id={} step={}", job.id, resumed);
    }
    queue_.record_start(job.id, resumed);
    const int total = pipeline->total_steps(*state);
    int run_steps = 0;
    double run_seconds = 0;
    while (pipeline->completed_steps(*state) < total) {
      token.throw_if_cancelled();
      auto t0 = std::chrono::steady_clock::now();
      pipeline->step(*state, token);
      StateBlobs blobs;
      pipeline->save_state(*state, blobs);
      int done = pipeline->completed_steps(*state);
      store_.save(job.id, done, blobs);
      run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++run_steps;
      queue_.record_step(job.id, done, run_seconds / run_steps);
    }
    Video video = pipeline->decode(*state, token);
    state.reset();
    EncodedVideo file = registry_.encoder(job.spec.model)(video);
    store_.save_result(job.id, file);
    queue_.finish(job.id, JobPhase::kDone, "", file.bytes.size(), file.format);
    store_.remove(job.id);
  } catch (const Error& e) {
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
  } catch (const std::exception& e) {
    log->error("job failed id={} error=\"{}\"", job.id, e.what());
    store_.remove(job.id);
    queue_.finish(job.id, JobPhase::kFailed, e.what());
  }
  busy_ = false;
}

}  // namespace wand::sched
