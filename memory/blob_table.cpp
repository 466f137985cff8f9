#include "memory/blob_table.h"

#include "common/error.h"

namespace wand::memory {

const char* copy_state_name(CopyState state) {
  switch (state) {
    case CopyState::kAbsent: return "absent";
    case CopyState::kLoading: return "loading";
    case CopyState::kReady: return "ready";
    case CopyState::kEvicting: return "evicting";
  }
  return "unknown";
}

Blob& BlobTable::add(const std::string& name, std::uint64_t bytes, std::optional<FileRange> file) {
  if (by_name_.count(name)) throw Error(ErrorCode::kBadRequest, "blob '" + name + "' already exists");
  const BlobId id = next_id_++;
  Blob& b = blobs_[id];
  b.id = id;
  b.name = name;
  b.bytes = bytes;
  b.file = std::move(file);
  b.has_data = b.file.has_value();
  b.copies.resize(tier_count_);
  by_name_[name] = id;
  return b;
}

Blob* BlobTable::find(BlobId id) {
  auto it = blobs_.find(id);
  return it == blobs_.end() ? nullptr : &it->second;
}

const Blob* BlobTable::find(BlobId id) const {
  auto it = blobs_.find(id);
  return it == blobs_.end() ? nullptr : &it->second;
}

std::optional<BlobId> BlobTable::find(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

Blob& BlobTable::at(BlobId id) {
  Blob* b = find(id);
  if (!b) throw Error(ErrorCode::kNotFound, "no blob with id " + std::to_string(id));
  return *b;
}

void BlobTable::erase(BlobId id) {
  auto it = blobs_.find(id);
  if (it == blobs_.end()) return;
  by_name_.erase(it->second.name);
  blobs_.erase(it);
}

}  // namespace wand::memory
