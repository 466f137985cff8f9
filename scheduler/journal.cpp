#include "scheduler/journal.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "scheduler/durable_file.h"

namespace wand::sched {

namespace fs = std::filesystem;
using nlohmann::json;

Journal::Journal(fs::path path, std::vector<json>* records) : path_(std::move(path)) {
  std::error_code ec;
  std::vector<std::uint8_t> bytes;
  if (fs::exists(path_, ec)) bytes = read_file(path_);
  std::size_t pos = 0, good_end = 0, line_no = 0;
  while (pos < bytes.size()) {
    std::size_t nl = pos;
    while (nl < bytes.size() && bytes[nl] != '\n') ++nl;
    ++line_no;
    if (nl == bytes.size()) break;  // no newline: torn
    std::string line(reinterpret_cast<const char*>(bytes.data() + pos), nl - pos);
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    bool last = nl + 1 == bytes.size();
    if (j.is_discarded() || !j.is_object()) {
      if (last) break;  // torn last record
      throw Error(ErrorCode::kIo, path_.string() + ": corrupt record at line " +
                                      std::to_string(line_no) + " (not the last one)");
    }
    if (records) records->push_back(std::move(j));
    pos = nl + 1;
    good_end = pos;
  }
  torn_bytes_dropped_ = bytes.size() - good_end;
  if (torn_bytes_dropped_ > 0) {
    log::get("sched")->warn("journal torn tail dropped file={} bytes={}", path_.string(),
                            torn_bytes_dropped_);
    if (::truncate(path_.c_str(), static_cast<off_t>(good_end)) != 0) {
      throw Error(ErrorCode::kIo, "truncate " + path_.string() + ": " + std::strerror(errno));
    }
  }
  open_for_append();
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::open_for_append() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) throw Error(ErrorCode::kIo, "open " + path_.string() + ": " + std::strerror(errno));
  if (::fsync(fd_) != 0) {
    throw Error(ErrorCode::kIo, "fsync " + path_.string() + ": " + std::strerror(errno));
  }
  fsync_dir(path_.has_parent_path() ? path_.parent_path() : fs::path("."));
}

void Journal::append(const json& record) {
  std::string line = record.dump();
  line += '\n';
  // Note [Disk full] (durable_file.h): a record that cannot be written whole is
  // taken back (the file is cut to where it began), so a full disk never leaves a
  // torn record in the middle of the journal; the caller gets DiskFullError and the
  // change it journaled does not happen.
  const off_t start = ::lseek(fd_, 0, SEEK_END);
  auto fail = [&](const char* what, int err) {
    if (start >= 0 && ::ftruncate(fd_, start) != 0) {
      log::get("sched")->error("journal cut back failed file={} error=\"{}\"", path_.string(), std::strerror(errno));
    }
    throw_io_error(what, path_, err);
  };
  if (fault_disk_full()) fail("append", ENOSPC);
  std::size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("append", errno);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_) != 0) fail("fdatasync", errno);
}

void Journal::rewrite(const std::vector<json>& records) {
  std::string all;
  for (const auto& r : records) {
    all += r.dump();
    all += '\n';
  }
  write_file_atomic(path_, reinterpret_cast<const std::uint8_t*>(all.data()), all.size());
  open_for_append();
}

}  // namespace wand::sched
