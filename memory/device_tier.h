// DeviceTier: the interface of a GPU's memory level. Copies between a host pointer and
// the tier run asynchronously on the tier's own copy queue (a CUDA copy stream for
// CudaTier, a worker thread for CpuDeviceTier) and report through a Completion.
//
//   Completion c = dev.copy_in(host_ptr, dst_extent.offset, bytes);   // host -> device
//   c.wait();
//   dev.copy_out(src_offset, host_ptr, bytes).wait();                 // device -> host
//
// The host pointer must stay valid (and should be pinned memory for full speed) until the
// completion finishes. Copies issued to one tier complete in issue order.
// Threads: copy_in / copy_out from any thread; completions fire on the tier's own thread.
#pragma once

#include <cstdint>

#include "memory/completion.h"
#include "memory/tier.h"

namespace wand::memory {

class DeviceTier : public Tier {
 public:
  using Tier::Tier;

  virtual Completion copy_in(const void* host_src, std::uint64_t dst_offset, std::uint64_t bytes) = 0;
  virtual Completion copy_out(std::uint64_t src_offset, void* host_dst, std::uint64_t bytes) = 0;
  // "cpu" for CpuDeviceTier, "cuda" for CudaTier.
  virtual const char* backend() const = 0;
};

}  // namespace wand::memory
