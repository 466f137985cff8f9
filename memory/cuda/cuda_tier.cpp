#include "memory/cuda/cuda_tier.h"

#include <cuda_runtime.h>

#include "common/log.h"
#include "memory/cuda/cuda_check.h"

namespace wand::memory::cuda {

namespace {
// Makes `device` current for a scope and restores the caller's device afterwards: the
// current device is per thread, and the executor thread of GPU 0 may well ask for a copy
// to GPU 1 without expecting its own kernels to move.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    WAND_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) WAND_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

CudaTier::CudaTier(int device_index, std::uint64_t capacity)
    : DeviceTier("device" + std::to_string(device_index), TierKind::kDevice, device_index, capacity, kAlignment) {
  DeviceGuard guard(device_index);
  const std::uint64_t bytes = bytes_capacity();
  if (bytes > 0) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      std::size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemory(name(), bytes, free_b, free_b,
                        std::string("cudaMalloc of the device region failed: ") + cudaGetErrorString(err));
    }
    data_ = static_cast<std::byte*>(p);
  }
  cudaStream_t s = nullptr;
  WAND_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
  waiter_ = std::thread([this] { run(); });
  wand::log::get("mem")->info("cuda tier device={} bytes={}", device_index, format_bytes(bytes));
}

CudaTier::~CudaTier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  waiter_.join();
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device_index());
  for (void* ev : free_events_) cudaEventDestroy(static_cast<cudaEvent_t>(ev));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  if (data_) cudaFree(data_);
  cudaSetDevice(previous);
}

Completion CudaTier::copy_in(const void* host_src, std::uint64_t dst_offset, std::uint64_t bytes) {
  WAND_ASSERT(dst_offset + bytes <= bytes_capacity(), "copy_in past the end of " + name());
  return enqueue(data_ + dst_offset, host_src, bytes, true);
}

Completion CudaTier::copy_out(std::uint64_t src_offset, void* host_dst, std::uint64_t bytes) {
  WAND_ASSERT(src_offset + bytes <= bytes_capacity(), "copy_out past the end of " + name());
  return enqueue(host_dst, data_ + src_offset, bytes, false);
}

Completion CudaTier::enqueue(void* dst, const void* src, std::uint64_t bytes, bool inbound) {
  DeviceGuard guard(device_index());  // the current device is per thread: restore the caller's
  cudaEvent_t ev = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_events_.empty()) {
      ev = static_cast<cudaEvent_t>(free_events_.back());
      free_events_.pop_back();
    }
  }
  if (!ev) WAND_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventBlockingSync));
  Pending p{ev, bytes, inbound, {}};
  Completion c = p.done.completion();
  {
    std::lock_guard<std::mutex> lock(mu_);  // issue order == queue order
    auto s = static_cast<cudaStream_t>(stream_);
    cudaError_t err = cudaSuccess;
    if (bytes > 0) {
      err = cudaMemcpyAsync(dst, src, bytes, inbound ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, s);
    }
    if (err == cudaSuccess) err = cudaEventRecord(ev, s);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      cudaEventDestroy(ev);
      cuda_fail(err, inbound ? "cudaMemcpyAsync(host->device)" : "cudaMemcpyAsync(device->host)", __FILE__,
                __LINE__);
    }
    transfer_started();
    pending_.push_back(std::move(p));
  }
  cv_.notify_one();
  return c;
}

void CudaTier::run() {
  cudaSetDevice(device_index());
  for (;;) {
    Pending p;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (pending_.empty()) return;
      p = std::move(pending_.front());
      pending_.pop_front();
    }
    const cudaError_t err = cudaEventSynchronize(static_cast<cudaEvent_t>(p.event));
    if (err == cudaSuccess) {
      std::lock_guard<std::mutex> lock(mu_);
      free_events_.push_back(p.event);
    } else {
      cudaEventDestroy(static_cast<cudaEvent_t>(p.event));
    }
    transfer_finished(p.inbound && err == cudaSuccess ? p.bytes : 0, !p.inbound && err == cudaSuccess ? p.bytes : 0);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      p.done.fail(std::make_exception_ptr(
          Error(ErrorCode::kCuda, std::string("cuda copy on ") + name() + " failed: " + cudaGetErrorString(err))));
    } else {
      p.done.complete();
    }
  }
}

}  // namespace wand::memory::cuda
