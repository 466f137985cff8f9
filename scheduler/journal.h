// Journal: an append-only file of JSON records, one per line, each written and
// fdatasync'ed before append() returns, so a caller can acknowledge what it
// journaled. Opening replays every complete record; a torn last record (crash
// mid-append: no final newline, or a last line that does not parse) is dropped
// and truncated away. A bad record anywhere else is corruption: Error(kIo)
// naming the file and line.
//
//   std::vector<nlohmann::json> records;
//   sched::Journal journal(state_dir / "journal.jsonl", &records);
//   journal.append({{"op", "accept"}, ...});
//   journal.rewrite(compacted);      // atomic replace (temp, fsync, rename)
//
// Knows nothing of jobs (JobQueue gives the records their meaning). Not
// thread-safe: the owner serialises calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::sched {

class Journal {
 public:
  Journal(std::filesystem::path path, std::vector<nlohmann::json>* records);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  void append(const nlohmann::json& record);
  void rewrite(const std::vector<nlohmann::json>& records);

  const std::filesystem::path& path() const { return path_; }
  std::uint64_t torn_bytes_dropped() const { return torn_bytes_dropped_; }

 private:
  void open_for_append();

  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t torn_bytes_dropped_ = 0;
};

}  // namespace wand::sched
