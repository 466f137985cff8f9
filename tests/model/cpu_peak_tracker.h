// Peak CPU bytes that LibTorch allocates inside a callable, through its
// memory-reporting hook (c10::MemoryReportingInfoBase, the profiler's), for
// tests that check a memory budget on CPU.
//
//   int64_t peak = wand::test::measure_cpu_peak([&] { vae.decode(z, opt); });
//
// reportMemoryUsage's byte-total type differs between LibTorch versions
// (int64_t in 1.13, size_t in 2.x): it is read off the base class's own
// signature, so no version check is needed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include "common/torch_compat.h"

namespace wand::test {

template <class>
struct TotalArg;
template <class C, class A, class B, class T, class U, class D>
struct TotalArg<void (C::*)(A, B, T, U, D)> {
  using type = T;
};
using TotalT = TotalArg<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::type;

class PeakTracker : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t alloc_size, TotalT, TotalT, c10::Device device) override {
    if (device.type() != c10::DeviceType::CPU) return;
    const int64_t now = current_ += alloc_size;
    int64_t p = peak_.load();
    while (now > p && !peak_.compare_exchange_weak(p, now)) {
    }
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }
  int64_t current() const { return current_; }

 private:
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
};

// Peak CPU bytes allocated by fn above what was live when it started.
template <class F>
int64_t measure_cpu_peak(F&& fn) {
  auto tracker = std::make_shared<PeakTracker>();
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, tracker);
    fn();
  }
  return tracker->peak();
}

}  // namespace wand::test
