// Durable file helpers: whole-file atomic replacement (write temp, fsync,
// rename, fsync the directory) and a full read. Used by the journal compaction,
// checkpoints and results.
//
//   sched::write_file_atomic(dir / "j-3.ckpt", bytes);   // throws Error(kIo) naming the file
//   std::vector<std::uint8_t> b = sched::read_file(path); // throws Error(kIo)
//
// Note [Disk full]: a write that fails for lack of space (ENOSPC, EDQUOT) throws
// DiskFullError (an Error(kIo)), so callers can tell a transient full disk from a
// broken one: the daemon fails the request or pauses the job (and retries it),
// never the process, and never fails a job for good because of it. A failed
// write_file_atomic removes its temporary file. For tests, a disk-full fault can be
// switched on from outside the process: with WAND_FAULT_DISK_FULL_FILE=<path> set in
// the environment, every durable write (journal appends included) fails with ENOSPC
// while <path> exists (fault_disk_full()); a test needs no root and no small tmpfs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace wand::sched {

class DiskFullError : public Error {
 public:
  explicit DiskFullError(const std::string& message) : Error(ErrorCode::kIo, message) {}
};

// The injected disk-full fault (Note [Disk full]) is on now.
bool fault_disk_full();
// Throws DiskFullError when errno is ENOSPC/EDQUOT, else Error(kIo): "<what> <path>: <strerror>".
[[noreturn]] void throw_io_error(const std::string& what, const std::filesystem::path& p, int err);

void write_file_atomic(const std::filesystem::path& path, const std::uint8_t* data,
                       std::size_t size);
inline void write_file_atomic(const std::filesystem::path& path,
                              const std::vector<std::uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}
std::vector<std::uint8_t> read_file(const std::filesystem::path& path);
void fsync_dir(const std::filesystem::path& dir);
// Creates dir (and parents) if missing; throws Error(kIo) naming it.
void ensure_dir(const std::filesystem::path& dir);
// Removes the "*.tmp" files write_file_atomic left in dir (a crash mid-write); returns how many.
int remove_temp_files(const std::filesystem::path& dir);

}  // namespace wand::sched
