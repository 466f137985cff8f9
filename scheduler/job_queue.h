// JobQueue: the durable job table. Every accepted job and every state change is
// journaled (write + fdatasync, scheduler/journal.h) before the call returns, so
// the daemon acknowledges only what survives a crash. On construction it replays
// <state_dir>/journal.jsonl: every accepted job is back; a job that was running
// is queued again (the runner resumes it from its last checkpoint); the journal
// is compacted to one record per job when it has grown (Note [Journal compaction]).
// A job the daemon died under twice in a row fails ("crashed the daemon", Note
// [Crash starts]). A journal write that fails (DiskFullError, Note [Disk full])
// leaves the job unchanged and throws to the caller.
//
// Order: highest priority first, FIFO (submission order) within a priority.
//
//   sched::JobQueue queue(state_dir);
//   std::string id = queue.submit(spec);             // durable when it returns
//   auto started = queue.wait_next();                // runner thread; nullopt after close()
//   queue.record_step(id, 3, 0.8);
//   queue.finish(id, JobPhase::kDone, "", bytes, "mp4");
//   int sub = queue.subscribe([](const JobRecord& r, const std::string& kind) {...});
//
// Thread-safe. Note [Journal lock]: journal_mu_ serialises changes and their
// journal records (taken first), mu_ guards the table (taken second, briefly), so
// readers (get, list, counts) never wait for an fsync. A change is written to the
// journal before the call that made it returns; a new job becomes visible only
// once its accept record is durable. Listeners are called after both mutexes are
// released, on the thread that made the change; they must not block (the daemon
// posts to its io_context).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/cancel_token.h"
#include "scheduler/job_record.h"
#include "scheduler/journal.h"

namespace wand::sched {

// Job-parallel placement: which queued jobs a taker (a device worker) accepts.
// Called under the queue's lock: must be cheap and must not call the queue.
using JobFilter = std::function<bool(const JobRecord& record)>;

// kind: "state" (phase changed or cancel requested), "step" (a step completed) or "stage"
// (a running job's stage changed).
using JobListener = std::function<void(const JobRecord& record, const std::string& kind)>;

class JobQueue {
 public:
  explicit JobQueue(const std::filesystem::path& state_dir);

  std::string submit(JobSpec spec);
  std::optional<JobRecord> get(const std::string& id) const;
  std::vector<JobRecord> list() const;  // submission order

  struct CancelOutcome {
    JobPhase phase;      // phase after the request
    bool pending;        // running: stops at the next block boundary
  };
  // nullopt: unknown id. Queued -> cancelled now; running -> token cancelled;
  // terminal -> unchanged.
  std::optional<CancelOutcome> cancel(const std::string& id);

  struct Started {
    JobRecord record;
    std::shared_ptr<CancelToken> token;
  };
  // Runner side. Blocks until a queued job exists (marks it running, journaled)
  // or close() was called (nullopt).
  std::optional<Started> wait_next();
  // Non-blocking variant for tests and single-step drivers.
  std::optional<Started> try_next();
  // The same, restricted to jobs `accept` takes (highest priority first, FIFO within
  // a priority, among the accepted ones): a device worker takes only jobs that fit
  // its device; the others stay queued for another worker. An empty filter accepts all.
  std::optional<Started> wait_next(const JobFilter& accept);
  std::optional<Started> try_next(const JobFilter& accept);
  // ran_on: the card or card group it runs on (journaled with the start).
  void record_start(const std::string& id, int resumed_from_step, const std::string& ran_on = "");
  void record_step(const std::string& id, int step, double sec_per_step);
  // What a running job does now (JobRecord::stage): not journaled, no fsync; listeners get
  // kind "stage".
  void record_stage(const std::string& id, const std::string& stage);
  void finish(const std::string& id, JobPhase phase, const std::string& error,
              std::uint64_t result_bytes = 0, const std::string& result_format = "",
              VideoShape video = {});
  // Interrupted by shutdown: back to queued, keeping its step (journaled).
  void requeue(const std::string& id);
  // Note [Disk full]: the job could not go on for a transient reason (the disk is
  // full): back to queued with `why` as its note, keeping its step and checkpoint. Never
  // throws: the change is journaled when the journal can take it (replay makes an
  // interrupted job queued in any case).
  void pause(const std::string& id, const std::string& why);
  // Asks every running job to stop for shutdown (CancelToken::Reason::kShutdown).
  void stop_running();
  // wait_next() returns nullopt from now on.
  void close();
  // Waiting takers look at the queue again: a filter's answer changed without a queue
  // change (JobRunner released the cards of a group, Note [Card groups] in job_runner.h).
  void wake();

  int subscribe(JobListener listener);
  void unsubscribe(int handle);

  struct Counts {
    int queued = 0, running = 0, done = 0, failed = 0, cancelled = 0;
  };
  Counts counts() const;

 private:
  std::optional<Started> start_best_locked(const JobFilter& accept);  // needs journal_mu_ and mu_
  bool has_queued_locked(const JobFilter& accept) const;              // needs mu_
  // Applies f to job id under both locks, journals the result, returns a copy.
  template <class F>
  JobRecord change(const std::string& id, F f);
  void journal_update(const JobRecord& r);         // needs journal_mu_ (not mu_)
  void notify(const JobRecord& r, const std::string& kind);  // without mu_
  nlohmann::json accept_record(const JobRecord& r) const;    // Note [Inputs out of the journal]
  std::filesystem::path input_path(const std::string& id) const;

  const std::filesystem::path inputs_dir_;                         // immutable

  std::mutex journal_mu_;                                          // taken before mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;                                     // with mu_
  std::unique_ptr<Journal> journal_;                               // guarded by journal_mu_
  std::map<std::string, JobRecord> jobs_;                          // guarded by mu_
  std::map<std::string, std::shared_ptr<CancelToken>> running_;    // guarded by mu_
  std::uint64_t next_seq_ = 1;                                     // guarded by mu_
  bool closed_ = false;                                            // guarded by mu_
  std::map<int, JobListener> listeners_;                           // guarded by mu_
  int next_listener_ = 1;                                          // guarded by mu_
};

}  // namespace wand::sched
