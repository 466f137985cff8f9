// BlobTable: the blobs of a pool by id and by name.
//
//   BlobTable t(tier_count);
//   Blob& b = t.add("dit.block.3", 670 << 20, FileRange{"/m/shard1.safetensors", 4096});
//   Blob* p = t.find(b.id);
//
// Not thread-safe: MemoryPool guards it with its mutex.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "memory/blob.h"

namespace wand::memory {

class BlobTable {
 public:
  explicit BlobTable(std::size_t tier_count) : tier_count_(tier_count) {}

  // Throws wand::Error(kBadRequest) when the name is taken.
  Blob& add(const std::string& name, std::uint64_t bytes, std::optional<FileRange> file);
  Blob* find(BlobId id);
  const Blob* find(BlobId id) const;
  std::optional<BlobId> find(const std::string& name) const;
  // Throws wand::Error(kNotFound) naming the id.
  Blob& at(BlobId id);
  void erase(BlobId id);
  std::size_t size() const { return blobs_.size(); }

  template <class F>
  void for_each(F&& f) {
    for (auto& [id, b] : blobs_) f(b);
  }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [id, b] : blobs_) f(b);
  }

 private:
  std::size_t tier_count_;
  BlobId next_id_ = 1;
  std::map<BlobId, Blob> blobs_;
  std::unordered_map<std::string, BlobId> by_name_;
};

}  // namespace wand::memory
