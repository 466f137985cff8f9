// CheckpointStore: per-job step checkpoints and finished results under a state
// directory (later: the disk tier of memory/):
//
//   <dir>/checkpoints/<job>.ckpt   "WANDCKP1", u32 step, u32 count,
//                                  count x (u32 name_len, name, u64 size, bytes),
//                                  u64 FNV-1a of everything before (little endian)
//   <dir>/results/<job>.<format>   the encoded video
//
//   store.save("j-3", 7, blobs);                  // atomic: temp, fsync, rename
//   std::optional<Checkpoint> c = store.load("j-3");
//   store.save_result("j-3", encoded);
//   std::optional<std::filesystem::path> p = store.result_path("j-3", "wandrgb");
//
// A job's identity is stored as the blob "wand.identity" (not handed to the
// pipeline). Temporary files of interrupted writes ("*.tmp") are removed at
// construction.
//
// Thread-safety: calls for different jobs may run concurrently; calls for one job
// are serialised by the caller (the runner owns a running job's files).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "scheduler/pipeline.h"

namespace wand::sched {

struct Checkpoint {
  int step = 0;
  StateBlobs blobs;
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::filesystem::path dir);  // creates the sub-directories

  // identity: JobRecord::identity() (Note [Job identity]); stored with the blobs.
  void save(const std::string& job, int step, const StateBlobs& blobs, const std::string& identity = "");
  // nullopt when there is none; throws Error(kIo) naming the file when it is corrupt,
  // or when `identity` is set and the checkpoint was written for another job (a job of
  // the same id from another life of the state dir): it is never resumed.
  std::optional<Checkpoint> load(const std::string& job, const std::string& identity = "") const;
  void remove(const std::string& job);

  void save_result(const std::string& job, const EncodedVideo& video);
  std::filesystem::path result_path(const std::string& job, const std::string& format) const;
  void remove_result(const std::string& job, const std::string& format);

 private:
  std::filesystem::path checkpoint_path(const std::string& job) const;

  std::filesystem::path checkpoints_;
  std::filesystem::path results_;
};

}  // namespace wand::sched
