#include "scheduler/checkpoint_store.h"

#include <cstring>

#include "common/error.h"
#include "scheduler/durable_file.h"

namespace wand::sched {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'W', 'A', 'N', 'D', 'C', 'K', 'P', '1'};
constexpr const char* kIdentityBlob = "wand.identity";

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

void put(ByteBuffer& b, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

struct Reader {
  const ByteBuffer& b;
  std::size_t pos;
  const fs::path& file;
  std::uint64_t get(int bytes) {
    need(bytes);
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= std::uint64_t{b[pos + i]} << (8 * i);
    pos += bytes;
    return v;
  }
  void need(std::size_t n) {
    if (b.size() - 8 < pos + n) {  // the last 8 bytes are the checksum
      throw Error(ErrorCode::kIo, file.string() + ": truncated checkpoint");
    }
  }
};

}  // namespace

CheckpointStore::CheckpointStore(fs::path dir)
    : checkpoints_(dir / "checkpoints"), results_(dir / "results") {
  ensure_dir(checkpoints_);
  ensure_dir(results_);
  remove_temp_files(checkpoints_);  // Note [Disk full]: a crash mid-write leaves one
  remove_temp_files(results_);
}

fs::path CheckpointStore::checkpoint_path(const std::string& job) const {
  return checkpoints_ / (job + ".ckpt");
}

void CheckpointStore::save(const std::string& job, int step, const StateBlobs& state, const std::string& identity) {
  const StateBlobs* all = &state;
  StateBlobs with_identity;
  if (!identity.empty()) {
    with_identity = state;
    with_identity[kIdentityBlob].assign(identity.begin(), identity.end());
    all = &with_identity;
  }
  const StateBlobs& blobs = *all;
  ByteBuffer b(kMagic, kMagic + 8);
  put(b, static_cast<std::uint32_t>(step), 4);
  put(b, blobs.size(), 4);
  for (const auto& [name, data] : blobs) {
    put(b, name.size(), 4);
    b.insert(b.end(), name.begin(), name.end());
    put(b, data.size(), 8);
    b.insert(b.end(), data.begin(), data.end());
  }
  put(b, fnv1a(b.data(), b.size()), 8);
  write_file_atomic(checkpoint_path(job), b);
}

std::optional<Checkpoint> CheckpointStore::load(const std::string& job, const std::string& identity) const {
  fs::path file = checkpoint_path(job);
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  ByteBuffer b = read_file(file);
  if (b.size() < 8 + 8 + 8 || std::memcmp(b.data(), kMagic, 8) != 0) {
    throw Error(ErrorCode::kIo, file.string() + ": not a wand checkpoint (bad magic or size)");
  }
  std::uint64_t stored = 0;
  for (int i = 0; i < 8; ++i) stored |= std::uint64_t{b[b.size() - 8 + i]} << (8 * i);
  if (stored != fnv1a(b.data(), b.size() - 8)) {
    throw Error(ErrorCode::kIo, file.string() + ": checksum mismatch");
  }
  Reader r{b, 8, file};
  Checkpoint c;
  c.step = static_cast<int>(r.get(4));
  auto count = r.get(4);
  for (std::uint64_t i = 0; i < count; ++i) {
    auto name_len = r.get(4);
    r.need(name_len);
    std::string name(reinterpret_cast<const char*>(b.data() + r.pos), name_len);
    r.pos += name_len;
    auto size = r.get(8);
    r.need(size);
    c.blobs[name].assign(b.begin() + r.pos, b.begin() + r.pos + size);
    r.pos += size;
  }
  auto id = c.blobs.find(kIdentityBlob);
  const std::string stored_identity = id == c.blobs.end() ? "" : std::string(id->second.begin(), id->second.end());
  if (id != c.blobs.end()) c.blobs.erase(id);
  // Note [Job identity]: a checkpoint resumes only the job it was written for.
  if (!identity.empty() && stored_identity != identity) {
    throw Error(ErrorCode::kIo, file.string() + ": written for another job (" +
                                    (stored_identity.empty() ? std::string("no identity") : stored_identity) +
                                    ", this job is " + identity + "); not resumed");
  }
  return c;
}

void CheckpointStore::remove(const std::string& job) {
  std::error_code ec;
  fs::remove(checkpoint_path(job), ec);
}

fs::path CheckpointStore::result_path(const std::string& job, const std::string& format) const {
  return results_ / (job + "." + format);
}

void CheckpointStore::save_result(const std::string& job, const EncodedVideo& video) {
  write_file_atomic(result_path(job, video.format), video.bytes);
}

void CheckpointStore::remove_result(const std::string& job, const std::string& format) {
  std::error_code ec;
  fs::remove(result_path(job, format), ec);
}

}  // namespace wand::sched
