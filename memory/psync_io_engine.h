// PsyncIoEngine: the fallback IoEngine: pread / pwrite on a few worker threads, chunk by
// chunk (see Note [Chunked direct I/O]). Chosen when io_uring is unavailable.
//
//   PsyncIoEngine engine(IoEngineOptions{});
//   engine.submit({fd, path, off, buf, n}).wait();
//
// Owns: its worker threads; the destructor finishes every queued chunk first.
// Threads: submit() from any thread; completions fire on a worker thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "memory/detail/io_op.h"
#include "memory/detail/io_queue.h"
#include "memory/io_engine.h"

namespace wand::memory {

class PsyncIoEngine : public IoEngine {
 public:
  explicit PsyncIoEngine(const IoEngineOptions& options);
  ~PsyncIoEngine() override;

  const char* name() const override { return "psync"; }
  Completion submit(IoRequest request) override;

 private:
  void run();

  const std::uint64_t chunk_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  detail::IoQueue queue_;  // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace wand::memory
