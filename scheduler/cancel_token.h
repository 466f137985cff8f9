// CancelToken: how the runner asks a pipeline to stop. A pipeline calls
// throw_if_cancelled() between blocks; it throws Error(kCancelled). The reason
// tells the runner what to do next: kCancel frees the job, kShutdown leaves it
// queued to resume from its last checkpoint.
//
//   token.request(CancelToken::Reason::kCancel);   // any thread
//   token.throw_if_cancelled();                    // the pipeline's thread
#pragma once

#include <atomic>

#include "common/error.h"

namespace wand::sched {

class CancelToken {
 public:
  enum class Reason : int { kNone = 0, kCancel = 1, kShutdown = 2 };

  void request(Reason r) {
    int expected = 0;
    reason_.compare_exchange_strong(expected, static_cast<int>(r));
  }
  bool requested() const { return reason_.load() != 0; }
  Reason reason() const { return static_cast<Reason>(reason_.load()); }
  void throw_if_cancelled() const {
    if (requested()) {
      throw Error(ErrorCode::kCancelled,
                  reason() == Reason::kShutdown ? "stopped for shutdown" : "cancelled");
    }
  }

 private:
  std::atomic<int> reason_{0};  // first request wins
};

}  // namespace wand::sched
