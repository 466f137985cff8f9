#include "memory/disk_tier.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/log.h"

namespace wand::memory {

namespace {
std::atomic<int> g_spool_seq{0};
}

DiskTier::DiskTier(const std::string& dir, std::uint64_t capacity)
    : Tier("disk", TierKind::kDisk, -1, capacity, kAlignment) {
  if (dir.empty()) throw Error(ErrorCode::kConfig, "disk tier: spool directory is empty");
  path_ = dir + "/wand-spool-" + std::to_string(::getpid()) + "-" +
          std::to_string(g_spool_seq.fetch_add(1)) + ".bin";
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  direct_ = fd_ >= 0;
  if (fd_ < 0 && errno == EINVAL) {  // tmpfs and friends: no O_DIRECT
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  }
  if (fd_ < 0) {
    throw Error(ErrorCode::kIo, "disk tier: cannot create spool file " + path_ + ": " +
                                    std::strerror(errno));
  }
  const auto bytes = static_cast<off_t>(bytes_capacity());
  if (bytes > 0) {
    int rc = ::posix_fallocate(fd_, 0, bytes);
    if (rc == EOPNOTSUPP || rc == EINVAL) rc = ::ftruncate(fd_, bytes) == 0 ? 0 : errno;
    if (rc != 0) {
      ::close(fd_);
      ::unlink(path_.c_str());
      throw Error(ErrorCode::kIo, "disk tier: cannot reserve " + format_bytes(bytes_capacity()) +
                                      " in " + path_ + ": " + std::strerror(rc));
    }
  }
  wand::log::get("mem")->info("disk tier path={} bytes={} direct={}", path_,
                              format_bytes(bytes_capacity()), direct_);
}

DiskTier::~DiskTier() {
  if (fd_ >= 0) ::close(fd_);
  ::unlink(path_.c_str());
}

}  // namespace wand::memory
