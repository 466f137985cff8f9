// CpuDeviceTier: a fake device tier in host memory, with its own budget, whose copies
// run on a worker thread (as a CUDA copy stream would). It stands in for a GPU in tests
// and on machines without one, so everything above memory/ runs for real.
//
//   CpuDeviceTier dev(0, 2ull << 30);      // "device0", 2 GiB
//   Completion c = dev.copy_in(src, off, n);
//
// Owns: its region (aligned_alloc) and its copy thread; the destructor drains the queue.
// Threads: copy_in / copy_out from any thread; completions fire on the copy thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "memory/device_tier.h"

namespace wand::memory {

class CpuDeviceTier : public DeviceTier {
 public:
  static constexpr std::uint64_t kAlignment = 256;  // cudaMalloc's alignment

  CpuDeviceTier(int device_index, std::uint64_t capacity);
  ~CpuDeviceTier() override;

  std::byte* base() const override { return data_; }
  bool host_addressable() const override { return true; }
  const char* backend() const override { return "cpu"; }

  Completion copy_in(const void* host_src, std::uint64_t dst_offset, std::uint64_t bytes) override;
  Completion copy_out(std::uint64_t src_offset, void* host_dst, std::uint64_t bytes) override;

 private:
  struct Job {
    void* dst;
    const void* src;
    std::uint64_t bytes;
    bool inbound;
    CompletionSource done;
  };
  Completion enqueue(void* dst, const void* src, std::uint64_t bytes, bool inbound);
  void run();

  std::byte* data_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stop_ = false;      // guarded by mu_
  std::thread worker_;
};

}  // namespace wand::memory
