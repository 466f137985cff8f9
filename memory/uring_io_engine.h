// UringIoEngine: the fast IoEngine: one io_uring with up to queue_depth chunk reads /
// writes in flight (see Note [Chunked direct I/O]), fixed (registered) buffers when the
// destination lies in a registered host region, and one thread that owns the ring.
// Built only when liburing is found (WAND_HAVE_IO_URING).
//
//   UringIoEngine engine(IoEngineOptions{.queue_depth = 32, .fixed_regions = {{host, n}}});
//   Completion c = engine.submit({fd, path, off, buf, n});
//
// Note [Ring thread wake-up]: the ring thread blocks only in io_uring_wait_cqe. To hear
// about new work it keeps one read of an eventfd in the ring; submit() queues chunks and
// writes the eventfd, whose completion wakes the thread, which re-arms the read. No
// polling, no timeouts.
//
// Owns: the ring, the eventfd, the ring thread. The destructor finishes every queued chunk.
// Threads: submit() from any thread (queue guarded by mu_); everything else on the ring
// thread; completions fire on the ring thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "memory/detail/io_op.h"
#include "memory/detail/io_queue.h"
#include "memory/io_engine.h"

struct io_uring;

namespace wand::memory {

class UringIoEngine : public IoEngine {
 public:
  explicit UringIoEngine(const IoEngineOptions& options);
  ~UringIoEngine() override;

  // True when a ring can be set up and READ / WRITE opcodes are supported.
  static bool probe();

  const char* name() const override { return "io_uring"; }
  Completion submit(IoRequest request) override;
  std::uint64_t bytes_registered() const override { return bytes_registered_; }

 private:
  void run();
  void wake();
  // Index of the registered buffer holding [p, p + n), or -1.
  int fixed_index(const void* p, std::uint64_t n) const;

  const unsigned depth_;
  const std::uint64_t chunk_bytes_;
  std::unique_ptr<io_uring> ring_;
  int event_fd_ = -1;
  std::vector<iovec> fixed_;  // immutable after construction
  std::uint64_t bytes_registered_ = 0;
  std::uint64_t wake_value_ = 0;  // the eventfd read's buffer (ring thread / kernel)

  std::mutex mu_;
  detail::IoQueue queue_;  // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::thread thread_;
};

}  // namespace wand::memory
