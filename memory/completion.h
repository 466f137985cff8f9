// Completion: a future-like, waitable handle for one asynchronous memory operation
// (a disk read, a host->device copy, a whole disk->host->device chain).
//
//   CompletionSource src;               // producer side (an engine thread)
//   Completion done = src.completion(); // consumer side (any thread)
//   src.complete();  or  src.fail(std::make_exception_ptr(wand::Error(...)));
//   done.wait();                        // blocks on a condition variable; rethrows the failure
//   done.then([](const std::exception_ptr& err) { ... });
//
// Owns: a shared state (mutex, condition variable, exception_ptr, callbacks).
// Threads: any thread may wait / poll / add callbacks; exactly one producer completes it,
// once. Callbacks run on the completing thread, or inline in then() when the operation
// has already finished, so a callback must not take a lock its registrant holds.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace wand::memory {

namespace detail {
struct CompletionState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;                                            // guarded by mu
  std::exception_ptr error;                                     // guarded by mu
  std::vector<std::function<void(const std::exception_ptr&)>> callbacks;  // guarded by mu
};
}  // namespace detail

class Completion {
 public:
  Completion() = default;  // an invalid handle; valid() is false
  explicit Completion(std::shared_ptr<detail::CompletionState> state) : state_(std::move(state)) {}

  // An already-finished completion (success, or failure when err is set).
  static Completion ready(std::exception_ptr err = nullptr);

  bool valid() const { return state_ != nullptr; }
  bool done() const;
  // True once done and failed.
  bool failed() const;
  // Blocks until done; rethrows the failure.
  void wait() const;
  // Blocks at most timeout; true when done (does not throw).
  bool wait_for(std::chrono::milliseconds timeout) const;
  // The failure, or nullptr (only meaningful once done()).
  std::exception_ptr error() const;
  // Runs cb(err) once done (inline if already done).
  void then(std::function<void(const std::exception_ptr&)> cb) const;

  // A completion that finishes when all parts have; fails with the first failure.
  static Completion all(const std::vector<Completion>& parts);

 private:
  std::shared_ptr<detail::CompletionState> state_;
};

class CompletionSource {
 public:
  CompletionSource() : state_(std::make_shared<detail::CompletionState>()) {}
  Completion completion() const { return Completion(state_); }
  void complete() { finish(nullptr); }
  void fail(std::exception_ptr err) { finish(std::move(err)); }

 private:
  void finish(std::exception_ptr err);
  std::shared_ptr<detail::CompletionState> state_;
};

}  // namespace wand::memory
