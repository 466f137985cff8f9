// CudaTier: a GPU's level of the pool: one cudaMalloc region per GPU reserved at start-up,
// sub-allocated (256-byte alignment), with its own copy stream. Copies are
// cudaMemcpyAsync on that stream; each records a CUDA event, and a completion thread
// waits on the events in order (cudaEventSynchronize, blocking sync: no spinning, no
// sleeping) and finishes the Completions.
//
//   CudaTier dev(0, 70ull << 30);
//   Completion c = dev.copy_in(pinned_host_ptr, dst_offset, n);   // H2D on the copy stream
//   c.wait();
//
// Owns: the device region, the copy stream, the events in flight, the completion thread.
// Threads: copy_in / copy_out from any thread (the issue order is the completion order:
// the enqueue is under mu_); completions fire on the completion thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "memory/device_tier.h"

namespace wand::memory::cuda {

// Number of usable CUDA devices; 0 when the runtime or driver reports none / an error.
int device_count();

class CudaTier : public DeviceTier {
 public:
  static constexpr std::uint64_t kAlignment = 256;

  // Throws wand::OutOfMemory when the region cannot be reserved, wand::Error(kCuda) otherwise.
  CudaTier(int device_index, std::uint64_t capacity);
  ~CudaTier() override;

  std::byte* base() const override { return data_; }
  bool host_addressable() const override { return false; }
  const char* backend() const override { return "cuda"; }

  Completion copy_in(const void* host_src, std::uint64_t dst_offset, std::uint64_t bytes) override;
  Completion copy_out(std::uint64_t src_offset, void* host_dst, std::uint64_t bytes) override;

  void* stream() const { return stream_; }  // cudaStream_t

 private:
  struct Pending {
    void* event;  // cudaEvent_t
    std::uint64_t bytes;
    bool inbound;
    CompletionSource done;
  };
  Completion enqueue(void* dst, const void* src, std::uint64_t bytes, bool inbound);
  void run();

  std::byte* data_ = nullptr;
  void* stream_ = nullptr;  // cudaStream_t, immutable after construction
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> pending_;  // guarded by mu_, in issue order
  std::vector<void*> free_events_;  // guarded by mu_: cudaEvent_t reused across copies
  bool stop_ = false;            // guarded by mu_
  std::thread waiter_;
};

}  // namespace wand::memory::cuda
