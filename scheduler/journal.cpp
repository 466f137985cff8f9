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
  std::size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, "append " + path_.string() + ": " + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_) != 0) {
    throw Error(ErrorCode::kIo, "fdatasync " + path_.string() + ": " + std::strerror(errno));
  }
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
