// DiskTier: the disk level of the pool: one spool file in a directory, sized to the
// budget once (fallocate), opened with O_DIRECT and sub-allocated in 4 KiB extents.
// Bytes move in and out through the IoEngine (disk <-> pinned host memory).
//
//   DiskTier disk("/var/lib/wand/spool", 64ull << 30);
//   Extent e = disk.allocate(n);            // file range [e.offset, e.offset + e.bytes)
//   engine.write(disk.fd(), disk.path(), e.offset, host_ptr, e.bytes);
//
// Owns: the spool file (created on construction, unlinked on destruction).
// Threads: as Tier; fd() is immutable after construction.
#pragma once

#include <string>

#include "memory/tier.h"

namespace wand::memory {

class DiskTier : public Tier {
 public:
  static constexpr std::uint64_t kAlignment = 4096;

  // Throws wand::Error(kIo) naming the directory when it cannot create or size the file.
  DiskTier(const std::string& dir, std::uint64_t capacity);
  ~DiskTier() override;

  std::byte* base() const override { return nullptr; }
  bool host_addressable() const override { return false; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool direct() const { return direct_; }

 private:
  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
};

}  // namespace wand::memory
