#include "scheduler/durable_file.h"

#include <cerrno>
#include <cstring>

#include <cstdlib>

#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

namespace wand::sched {

namespace fs = std::filesystem;

bool fault_disk_full() {
  const char* marker = std::getenv("WAND_FAULT_DISK_FULL_FILE");
  return marker && *marker && ::access(marker, F_OK) == 0;
}

void throw_io_error(const std::string& what, const fs::path& p, int err) {
  std::string msg = what + " " + p.string() + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) throw DiskFullError(msg);
  throw Error(ErrorCode::kIo, msg);
}

namespace {
[[noreturn]] void io_fail(const std::string& what, const fs::path& p) { throw_io_error(what, p, errno); }
}  // namespace

int remove_temp_files(const fs::path& dir) {
  int n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".tmp" && it->is_regular_file(ec)) {
      std::error_code rec;
      if (fs::remove(p, rec)) {
        ++n;
        log::get("sched")->info("temporary file removed path={}", p.string());
      }
    }
  }
  return n;
}

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_fail("open dir", dir);
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    io_fail("fsync dir", dir);
  }
  ::close(fd);
}

void ensure_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::kIo, "create directory " + dir.string() + ": " + ec.message());
}

void write_file_atomic(const fs::path& path, const std::uint8_t* data, std::size_t size) {
  fs::path tmp = path;
  tmp += ".tmp";
  if (fault_disk_full()) throw_io_error("write", tmp, ENOSPC);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) io_fail("create", tmp);
  // Note [Disk full]: a failed write leaves no temporary file behind.
  auto fail = [&](const char* what) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw_io_error(what, tmp, e);
  };
  std::size_t off = 0;
  while (off < size) {
    ssize_t n = ::write(fd, data + off, size - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync");
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw_io_error("rename to", path, e);
  }
  fsync_dir(path.has_parent_path() ? path.parent_path() : fs::path("."));
}

std::vector<std::uint8_t> read_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail("open", path);
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      errno = e;
      io_fail("read", path);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

}  // namespace wand::sched
