// TransferEngine: moves bytes between tiers - the mechanism under MemoryPool. Disk and
// file reads / writes go through the IoEngine (io_uring or pread, O_DIRECT, straight into
// the pinned host region: no bounce buffer); host <-> device copies through the device
// tier's own copy queue (a CUDA copy stream, or the CPU device tier's worker). It keeps
// the per-tier transfer counters (in flight, bytes in / out) that the pool's status shows.
//
//   TransferEngine xfer(host, disk, make_io_engine(opts));
//   Completion c = xfer.file_to_host(fd, path, direct, aligned_offset, host_extent, needed);
//   xfer.host_to_device(dev, host.base() + off, dev_extent.offset, n).wait();
//
// It decides nothing: which copy to make is the pool's call, when is the policy's.
// Owns: the IoEngine. Threads: any thread; completions fire on engine / copy threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "memory/completion.h"
#include "memory/device_tier.h"
#include "memory/disk_tier.h"
#include "memory/host_tier.h"
#include "memory/io_engine.h"

namespace wand::memory {

class TransferEngine {
 public:
  // disk may be null (no disk tier).
  TransferEngine(HostTier& host, DiskTier* disk, std::unique_ptr<IoEngine> io);
  ~TransferEngine();  // joins the io engine (finishes what is queued)

  IoEngine& io() { return *io_; }

  // Reads [file_offset, file_offset + dst.bytes) of a file (file_offset block aligned)
  // into the host extent; the blob is the `bytes` bytes from `head` on, which must exist
  // (the aligned tail may run past the end of the file). Counts `bytes` as moved.
  // `urgent`: a demand, queued ahead of prefetches (IoRequest::urgent).
  Completion file_to_host(int fd, const std::string& path, bool direct, std::uint64_t file_offset, Extent dst,
                          std::uint64_t head, std::uint64_t bytes, bool urgent = false);
  // Disk tier extent <-> host extent, `bytes` of the blob (rounded up to 4 KiB on the wire).
  Completion disk_to_host(Extent src, Extent dst, std::uint64_t bytes, bool urgent = false);
  Completion host_to_disk(Extent src, Extent dst, std::uint64_t bytes);
  // Host pointer (inside the host region) <-> device tier offset.
  Completion host_to_device(DeviceTier& dev, const std::byte* src, std::uint64_t dst_offset, std::uint64_t bytes);
  Completion device_to_host(DeviceTier& dev, std::uint64_t src_offset, std::byte* dst, std::uint64_t bytes);

 private:
  HostTier& host_;
  DiskTier* disk_;
  std::unique_ptr<IoEngine> io_;
};

}  // namespace wand::memory
