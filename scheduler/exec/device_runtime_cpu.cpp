// device_runtime.h without CUDA (CPU LibTorch builds): nothing to cap, fences done at once.
#include "scheduler/exec/device_runtime.h"

namespace wand::sched::exec {

struct ComputeFence::Impl {};

bool torch_cuda_available() { return false; }
DeviceMemInfo device_mem_info(int) { return {}; }
void cap_caching_allocator(int, std::uint64_t) {}
std::uint64_t caching_allocator_reserved(int) { return 0; }
std::uint64_t caching_allocator_peak_reserved(int) { return 0; }
void reset_caching_allocator_peak(int) {}
void empty_caching_allocator() {}
void synchronize_device(int) {}

ComputeFence ComputeFence::record(int) { return {}; }
bool ComputeFence::done() const { return true; }
void ComputeFence::wait() const {}

}  // namespace wand::sched::exec
