#include "memory/completion.h"

#include <atomic>

#include "common/error.h"

namespace wand::memory {

Completion Completion::ready(std::exception_ptr err) {
  CompletionSource src;
  src.fail(std::move(err));  // fail(nullptr) is success
  return src.completion();
}

bool Completion::done() const {
  WAND_ASSERT(state_, "invalid completion");
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

bool Completion::failed() const {
  WAND_ASSERT(state_, "invalid completion");
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done && state_->error != nullptr;
}

void Completion::wait() const {
  WAND_ASSERT(state_, "invalid completion");
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->cv.wait(lock, [&] { return state_->done; });
  if (state_->error) std::rethrow_exception(state_->error);
}

bool Completion::wait_for(std::chrono::milliseconds timeout) const {
  WAND_ASSERT(state_, "invalid completion");
  std::unique_lock<std::mutex> lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->done; });
}

std::exception_ptr Completion::error() const {
  WAND_ASSERT(state_, "invalid completion");
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->error;
}

void Completion::then(std::function<void(const std::exception_ptr&)> cb) const {
  WAND_ASSERT(state_, "invalid completion");
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->done) {
      state_->callbacks.push_back(std::move(cb));
      return;
    }
    err = state_->error;
  }
  cb(err);
}

Completion Completion::all(const std::vector<Completion>& parts) {
  if (parts.empty()) return ready();
  struct Join {
    std::atomic<size_t> left;
    std::mutex mu;
    std::exception_ptr first;  // guarded by mu
    CompletionSource src;
  };
  auto join = std::make_shared<Join>();
  join->left = parts.size();
  Completion out = join->src.completion();
  for (const auto& p : parts) {
    p.then([join](const std::exception_ptr& err) {
      if (err) {
        std::lock_guard<std::mutex> lock(join->mu);
        if (!join->first) join->first = err;
      }
      if (--join->left == 0) {
        std::exception_ptr first;
        {
          std::lock_guard<std::mutex> lock(join->mu);
          first = join->first;
        }
        join->src.fail(first);
      }
    });
  }
  return out;
}

void CompletionSource::finish(std::exception_ptr err) {
  std::vector<std::function<void(const std::exception_ptr&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    WAND_ASSERT(!state_->done, "completion finished twice");
    state_->done = true;
    state_->error = err;
    callbacks.swap(state_->callbacks);
  }
  state_->cv.notify_all();
  for (auto& cb : callbacks) cb(err);
}

}  // namespace wand::memory
