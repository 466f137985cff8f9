// Durable file helpers: whole-file atomic replacement (write temp, fsync,
// rename, fsync the directory) and a full read. Used by the journal compaction,
// checkpoints and results.
//
//   sched::write_file_atomic(dir / "j-3.ckpt", bytes);   // throws Error(kIo) naming the file
//   std::vector<std::uint8_t> b = sched::read_file(path); // throws Error(kIo)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

namespace wand::sched {

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

}  // namespace wand::sched
