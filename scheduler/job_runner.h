// JobRunner: takes jobs from the JobQueue and drives their Pipeline step by step,
// checkpointing latents, sampler and RNG state (Pipeline::save_state) after every
// step (CheckpointStore, atomic) and journaling the step, so a crash resumes from
// the last completed step with a bitwise identical result.
//
//   sched::JobRunner runner(queue, registry, store);
//   runner.start();          // one worker thread
//   ...
//   runner.stop();           // running job stops at a block boundary, stays queued
//                            // at its last checkpoint; the thread is joined
//
// Cancel (JobQueue::cancel) stops a running job at the next block boundary; its
// state and checkpoint are dropped. run_one() is the loop body, for tests.
// Owns its worker thread; start/stop from one controlling thread.
#pragma once

#include <atomic>
#include <thread>

#include "scheduler/checkpoint_store.h"
#include "scheduler/job_queue.h"
#include "scheduler/pipeline_registry.h"

namespace wand::sched {

class JobRunner {
 public:
  JobRunner(JobQueue& queue, PipelineRegistry& registry, CheckpointStore& store);
  ~JobRunner();

  void start();
  void stop();
  // Runs one started job to its end (done, failed, cancelled, or requeued on shutdown).
  void run_one(const JobQueue::Started& started);
  bool busy() const { return busy_.load(); }

 private:
  void loop();

  JobQueue& queue_;
  PipelineRegistry& registry_;
  CheckpointStore& store_;
  std::thread thread_;
  std::atomic<bool> busy_{false};
};

}  // namespace wand::sched
