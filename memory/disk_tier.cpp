#include "memory/disk_tier.h"

#include <fcntl.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/log.h"

namespace wand::memory {

namespace {
std::atomic<int> g_spool_seq{0};

// True when `pid` is a live process that may be a wand (its comm starts "wand").
bool live_wand(long pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!std::getline(comm, name)) return true;  // cannot tell: keep its file
  return name.rfind("wand", 0) == 0;
}

// Note [Spool reclaim]: the spool file is reserved whole at start (fallocate of the
// tier's size) and unlinked at exit; a daemon killed with SIGKILL (or stopped before
// it was ready) leaves its file behind, and each such start would reserve another.
// Files named wand-spool-<pid>-<n>.bin whose pid is no live wand are removed first.
void reclaim_stale_spools(const std::string& dir) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    long pid = 0;
    int seq = 0;
    char tail[8] = {0};
    if (std::sscanf(name.c_str(), "wand-spool-%ld-%d.%4s", &pid, &seq, tail) != 3 || std::strcmp(tail, "bin") != 0) {
      continue;
    }
    if (pid <= 0 || pid == ::getpid() || live_wand(pid)) continue;
    std::error_code rec;
    const auto bytes = std::filesystem::file_size(it->path(), rec);
    if (std::filesystem::remove(it->path(), rec)) {
      wand::log::get("mem")->warn("stale spool file removed path={} bytes={} pid={} (not running)",
                                  it->path().string(), rec ? 0 : bytes, pid);
    }
  }
}
}  // namespace

DiskTier::DiskTier(const std::string& dir, std::uint64_t capacity)
    : Tier("disk", TierKind::kDisk, -1, capacity, kAlignment) {
  if (dir.empty()) throw Error(ErrorCode::kConfig, "disk tier: spool directory is empty");
  reclaim_stale_spools(dir);
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
