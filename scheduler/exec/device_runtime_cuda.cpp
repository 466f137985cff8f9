// device_runtime.h with LibTorch on CUDA (pip's LibTorch 2.x on the GPU machine; the
// calls used here have the same spelling in 1.13's c10/cuda).
#include "scheduler/exec/device_runtime.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "memory/cuda/cuda_check.h"

namespace wand::sched::exec {

namespace {
using c10::cuda::CUDACachingAllocator::getDeviceStats;
// StatType::AGGREGATE is 0 in 1.13 and 2.x; the enum moved from c10::cuda::
// CUDACachingAllocator to c10::CachingAllocator in 2.x, so it is not named here.
constexpr std::size_t kAggregate = 0;
}  // namespace

struct ComputeFence::Impl {
  cudaEvent_t event = nullptr;
  ~Impl() {
    if (event != nullptr) cudaEventDestroy(event);
  }
};

bool torch_cuda_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

DeviceMemInfo device_mem_info(int device) {
  DeviceMemInfo m;
  if (!torch_cuda_available()) return m;
  int prev = 0;
  WAND_CUDA_CHECK(cudaGetDevice(&prev));
  WAND_CUDA_CHECK(cudaSetDevice(device));
  size_t free_b = 0, total_b = 0;
  WAND_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  WAND_CUDA_CHECK(cudaSetDevice(prev));
  m.free_bytes = free_b;
  m.total_bytes = total_b;
  m.valid = true;
  return m;
}

void cap_caching_allocator(int device, std::uint64_t bytes) {
  DeviceMemInfo m = device_mem_info(device);
  if (!m.valid || m.total_bytes == 0) return;
  const double fraction = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(m.total_bytes));
  c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, static_cast<c10::DeviceIndex>(device));
}

// Note [Allocator before first use]: LibTorch creates the caching allocator's per-device state
// on the first CUDA allocation; before it, getDeviceStats / resetPeakStats throw c10::Error
// "Invalid device argument" (seen on the H100: a CPU-tier job's stats in a CUDA build, from a
// job state's destructor, terminated the test process). A device the allocator has not used
// holds nothing: 0 bytes, nothing to reset.
namespace {
bool allocator_ready(int device) { return device >= 0 && torch_cuda_available(); }
}  // namespace

std::uint64_t caching_allocator_reserved(int device) {
  if (!allocator_ready(device)) return 0;
  try {
    return static_cast<std::uint64_t>(getDeviceStats(static_cast<c10::DeviceIndex>(device)).reserved_bytes[kAggregate].current);
  } catch (const c10::Error&) {
    return 0;  // Note [Allocator before first use]
  }
}

std::uint64_t caching_allocator_peak_reserved(int device) {
  if (!allocator_ready(device)) return 0;
  try {
    return static_cast<std::uint64_t>(getDeviceStats(static_cast<c10::DeviceIndex>(device)).reserved_bytes[kAggregate].peak);
  } catch (const c10::Error&) {
    return 0;
  }
}

void reset_caching_allocator_peak(int device) {
  if (!allocator_ready(device)) return;
  try {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
  } catch (const c10::Error&) {
    // Note [Allocator before first use]
  }
}

void empty_caching_allocator() {
  if (torch_cuda_available()) c10::cuda::CUDACachingAllocator::emptyCache();
}

void synchronize_device(int device) {
  if (device < 0 || !torch_cuda_available()) return;
  WAND_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream()));
}

ComputeFence ComputeFence::record(int device) {
  ComputeFence f;
  if (device < 0) return f;
  f.impl_ = std::make_shared<Impl>();
  WAND_CUDA_CHECK(cudaEventCreateWithFlags(&f.impl_->event, cudaEventDisableTiming));
  WAND_CUDA_CHECK(cudaEventRecord(f.impl_->event, c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream()));
  return f;
}

bool ComputeFence::done() const {
  if (!impl_) return true;
  const cudaError_t e = cudaEventQuery(impl_->event);
  if (e == cudaErrorNotReady) return false;
  WAND_CUDA_CHECK(e);
  return true;
}

void ComputeFence::wait() const {
  if (impl_) WAND_CUDA_CHECK(cudaEventSynchronize(impl_->event));
}

}  // namespace wand::sched::exec
