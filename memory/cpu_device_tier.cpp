#include "memory/cpu_device_tier.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/error.h"

namespace wand::memory {

CpuDeviceTier::CpuDeviceTier(int device_index, std::uint64_t capacity)
    : DeviceTier("device" + std::to_string(device_index), TierKind::kDevice, device_index, capacity,
                 kAlignment) {
  const std::uint64_t bytes = bytes_capacity();
  if (bytes > 0) {
    data_ = static_cast<std::byte*>(std::aligned_alloc(4096, (bytes + 4095) & ~std::uint64_t{4095}));
    if (!data_) throw OutOfMemory(name(), bytes, 0, 0, "cpu device tier region allocation failed");
  }
  worker_ = std::thread([this] { run(); });
}

CpuDeviceTier::~CpuDeviceTier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  std::free(data_);
}

Completion CpuDeviceTier::copy_in(const void* host_src, std::uint64_t dst_offset, std::uint64_t bytes) {
  WAND_ASSERT(dst_offset + bytes <= bytes_capacity(), "copy_in past the end of " + name());
  return enqueue(data_ + dst_offset, host_src, bytes, true);
}

Completion CpuDeviceTier::copy_out(std::uint64_t src_offset, void* host_dst, std::uint64_t bytes) {
  WAND_ASSERT(src_offset + bytes <= bytes_capacity(), "copy_out past the end of " + name());
  return enqueue(host_dst, data_ + src_offset, bytes, false);
}

Completion CpuDeviceTier::enqueue(void* dst, const void* src, std::uint64_t bytes, bool inbound) {
  Job job{dst, src, bytes, inbound, {}};
  Completion c = job.done.completion();
  transfer_started();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return c;
}

void CpuDeviceTier::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job.bytes > 0) std::memcpy(job.dst, job.src, job.bytes);
    transfer_finished(job.inbound ? job.bytes : 0, job.inbound ? 0 : job.bytes);
    job.done.complete();
  }
}

}  // namespace wand::memory
