// JobRunner: takes jobs from the JobQueue and drives their Pipeline step by step,
// checkpointing latents, sampler and RNG state (Pipeline::save_state) after every
// step (CheckpointStore, atomic) and journaling the step, so a crash resumes from
// the last completed step with a bitwise identical result.
//
//   sched::JobRunner runner(queue, registry, store);
//   runner.start();          // one worker thread (one device, no budget check)
//   ...
//   runner.stop();           // running job stops at a block boundary, stays queued
//                            // at its last checkpoint; the threads are joined
//
// Job-parallel (issue 7): one worker thread per device slot, each running its own
// jobs concurrently with the others, each job placed by its predicted peak:
//
//   JobRunnerOptions o;
//   o.slots = {{0, 24ull << 30, "cuda:0"}, {1, 12ull << 30, "cuda:1"}, {2, 80ull << 30, "cuda:2"}};
//   o.estimator = [&](const JobSpec& s) { return planner.predicted_peak_bytes(s); };
//   sched::JobRunner runner(queue, registry, store, o);
//   runner.start();          // 3 workers; registry.pipeline(model, slot) per worker
//
// Note [Job placement]: a worker for slot d takes, among the queued jobs, the one of
// highest priority (FIFO within a priority) whose predicted peak fits d's budget
// (estimator(spec) <= vram_budget_bytes; budget 0 = unlimited; no estimator = every
// job fits). A job that fits only a big card stays queued until that card's worker
// is free (it does not fail, and smaller cards keep taking the jobs they can run).
// A job that fits no slot at all is taken by any worker and failed at once with
// Error(kOutOfMemory) naming its predicted peak and every slot's budget. An estimator
// that throws fails the job with its error. The estimator is called under the queue's
// lock (JobFilter): it must be cheap and must not call the queue; results are cached
// per job id. Pipelines come from PipelineRegistry::pipeline(model, slot): one per
// (model, slot), so a job's weights and budget are those of its card.
//
// One job on several cards (issue 7: "throughput when many jobs wait, latency for a single
// one"): a group chooser decides, when a worker takes a job, whether it runs on a group of
// the idle cards (CFG-parallel, Ulysses, CFG x Ulysses):
//
//   o.group_chooser = [](const JobSpec& spec, const std::vector<DeviceSlot>& idle, std::size_t waiting)
//       -> std::optional<DeviceGroup> {
//     if (waiting > 0 || idle.size() < 2) return std::nullopt;        // job-parallel
//     return DeviceGroup{{idle[0], idle[1]}, "cfg-parallel"};         // idle[0]: the taking card
//   };
//
// Note [Card groups]: when worker d takes a job it calls group_chooser(spec, idle, waiting):
// idle = the slots whose workers are free and not claimed, d's own slot first; waiting =
// the jobs still queued after this one. A returned group (>= 2 members, all among idle,
// d's slot among them, no duplicates; else the job fails with Error(kInternal) naming the
// group) is claimed: under mu_, every other member must still be free and unclaimed, and
// is then marked claimed by the job (when one was taken meanwhile, the chooser is asked
// again with the new idle set, up to 3 times, then the job runs on d alone). The job runs
// on d's thread with registry.pipeline(model, group) (the pipeline drives the members'
// devices itself); placements() shows group.key(). A claimed worker takes no job: its
// filter reads the claims under the same mutex (accepts()), so no job starts on a claimed
// card after the claim. A worker whose take was already under way (its filter passed
// before the claim) marks itself busy after it: it finds its slot claimed and hands the
// job back (JobQueue::requeue, logged "job handed back"), so no card ever runs two jobs. Claims are released when the job ends (done,
// failed, cancelled, requeued on stop), and JobQueue::wake() makes the released workers
// look at the queue again. A chooser that throws fails the job with its error. Without a
// chooser (or with one slot) every job runs on the card of its worker, as before.
// Budgets: the estimator's peak is checked against the taking card only; the chooser
// must only return groups whose members can run the job (the daemon asks planner v2).
//
// Cancel (JobQueue::cancel) stops a running job at the next block boundary; its
// state and checkpoint are dropped. run_one() is the loop body, for tests.
// Owns its worker threads; start/stop from one controlling thread. placements() and
// busy() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "scheduler/checkpoint_store.h"
#include "scheduler/job_queue.h"
#include "scheduler/pipeline_registry.h"

namespace wand::sched {

// Predicted device peak of a job in bytes (0: unknown, fits every slot).
using PeakEstimator = std::function<std::uint64_t(const JobSpec& spec)>;

// Whether a job taken now runs on a group of cards (Note [Card groups]); nullopt: on the
// taking card alone. idle: the free, unclaimed slots, the taking slot first; waiting: the
// jobs still queued. Called on the taking worker's thread, outside every lock.
using GroupChooser = std::function<std::optional<DeviceGroup>(const JobSpec& spec, const std::vector<DeviceSlot>& idle,
                                                              std::size_t waiting)>;

struct JobRunnerOptions {
  std::vector<DeviceSlot> slots;  // empty: one DeviceSlot{} (unlimited budget)
  PeakEstimator estimator;        // unset: every job fits every slot
  GroupChooser group_chooser;     // unset: every job on one card (job-parallel)
};

class JobRunner {
 public:
  JobRunner(JobQueue& queue, PipelineRegistry& registry, CheckpointStore& store);
  JobRunner(JobQueue& queue, PipelineRegistry& registry, CheckpointStore& store, JobRunnerOptions options);
  ~JobRunner();

  void start();
  void stop();
  // Asks the workers to stop (no waiting): the queue is closed, running jobs are asked
  // to stop at their next block boundary.
  void request_stop();
  // stop(), waiting at most `grace` for the workers: false when one did not stop in
  // time (Note [Stuck worker], job_runner.cpp): it is detached, and the caller must
  // end the process without destroying what it uses (the queue, the registry).
  bool stop_within(std::chrono::milliseconds grace);
  // Runs one started job to its end (done, failed, cancelled, or requeued on shutdown)
  // on slot position `slot` of options.slots (0: the first / only one).
  void run_one(const JobQueue::Started& started, std::size_t slot = 0);
  bool busy() const { return busy_.load() > 0; }
  int busy_workers() const { return busy_.load(); }
  const std::vector<DeviceSlot>& slots() const { return slots_; }
  // Running jobs: id -> the name of the slot running it, or its group's key
  // ("cfg-parallel@0,1") for a job on a group of cards.
  std::map<std::string, std::string> placements() const;
  // True when a job of `peak_bytes` fits the slot's budget.
  static bool fits(const DeviceSlot& slot, std::uint64_t peak_bytes) {
    return slot.vram_budget_bytes == 0 || peak_bytes <= slot.vram_budget_bytes;
  }

 private:
  void loop(std::size_t slot);
  // run_one's body once the slot is marked working: the job to its end.
  static void release_free_heap();  // Note [Heap after a job]
  void run_job(const JobQueue::Started& started, std::size_t slot);
  // The filter of slot's worker (Note [Job placement]).
  bool accepts(std::size_t slot, const JobRecord& record);
  // The job's predicted peak (cached per id); throws what the estimator throws.
  std::uint64_t peak_of(const JobRecord& record);
  bool fits_some_slot(std::uint64_t peak_bytes) const;
  std::string slots_text() const;
  // Note [Card groups]: asks the chooser and claims the group's other members for the job
  // (nullopt: run on `slot` alone). Throws what the chooser throws, or Error(kInternal)
  // for a group it may not return.
  std::optional<DeviceGroup> claim_group(const JobRecord& record, std::size_t slot);
  void check_group(const DeviceGroup& group, const std::vector<DeviceSlot>& idle, std::size_t slot) const;
  // Ends the job's use of `slot` and releases its claims (waking the released workers).
  void release(const std::string& id, std::size_t slot);
  std::size_t position_of(int index) const;  // slots_ position of a slot index (npos: none)
  // Note [Disk full]: pause the job (back to queued) and this worker.
  void pause_for_disk(const std::string& id, const Error& e);
  void note_disk_full();
  void note_progress();
  bool wait_out_pause();  // false once stopping

  JobQueue& queue_;
  PipelineRegistry& registry_;
  CheckpointStore& store_;
  const std::vector<DeviceSlot> slots_;   // immutable
  const PeakEstimator estimator_;         // immutable
  const GroupChooser group_chooser_;      // immutable
  std::vector<std::thread> threads_;      // one per slot, while started
  std::atomic<int> busy_{0};

  mutable std::mutex mu_;                              // taken after the queue's lock, never before
  std::map<std::string, std::uint64_t> peak_cache_;    // guarded by mu_
  std::map<std::string, std::string> placements_;      // guarded by mu_
  std::vector<bool> working_;                          // per slot position: running a job; guarded by mu_
  std::map<std::size_t, std::string> claimed_;         // slot position -> claiming job id; guarded by mu_

  std::mutex pause_mu_;                                 // never held while calling the queue
  std::condition_variable pause_cv_;                    // with pause_mu_: stop, a worker exited
  bool stopping_ = false;                               // guarded by pause_mu_
  std::size_t exited_ = 0;                              // workers whose loop ended; guarded by pause_mu_
  int backoff_ms_ = 0;                                  // guarded by pause_mu_
  std::chrono::steady_clock::time_point resume_after_{};  // guarded by pause_mu_
};

}  // namespace wand::sched
