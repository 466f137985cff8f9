// Device runtime helpers the executor needs beyond the memory pool: the true memory use of
// a card, LibTorch's caching allocator cap and its reserved bytes, and a fence that tells
// when the kernels launched so far on the compute stream have finished (so a weight slot
// can be unpinned). CPU builds (and LibTorch without CUDA) get the trivial versions:
// nothing to cap, fences are done at once.
//
//   DeviceMemInfo m = device_mem_info(0);          // cudaMemGetInfo: free / total
//   cap_caching_allocator(0, 6ull << 30);          // LibTorch may reserve at most 6 GiB
//   ComputeFence f = ComputeFence::record(0);      // after launching block i
//   ...  f.wait();                                 // block i's kernels are done
//
// No LibTorch in this header. Threads: any; a fence is used by one thread.
#pragma once

#include <cstdint>
#include <memory>

namespace wand::sched::exec {

struct DeviceMemInfo {
  std::uint64_t free_bytes = 0;
  std::uint64_t total_bytes = 0;
  bool valid = false;  // false on CPU
};

// True when this build can run LibTorch on CUDA (and a device is present).
bool torch_cuda_available();
DeviceMemInfo device_mem_info(int device);
// Caps LibTorch's caching allocator on `device` to `bytes` (setMemoryFraction of the
// card's total). No-op without CUDA.
void cap_caching_allocator(int device, std::uint64_t bytes);
// Bytes LibTorch's caching allocator holds (reserved) on `device`, current and peak.
std::uint64_t caching_allocator_reserved(int device);
std::uint64_t caching_allocator_peak_reserved(int device);
void reset_caching_allocator_peak(int device);
// Returns LibTorch's cached, unused blocks to the driver (emptyCache).
void empty_caching_allocator();
// Waits for the compute stream of `device` (no-op on CPU).
void synchronize_device(int device);

class ComputeFence {
 public:
  ComputeFence() = default;
  // Records a fence on the current compute stream of `device` (-1: CPU, done at once).
  static ComputeFence record(int device);
  bool done() const;
  void wait() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace wand::sched::exec
