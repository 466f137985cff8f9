// Checkpoint fingerprint: what a repacked weight file was made from, so that a repack is
// reused across restarts and redone when the checkpoint changes.
//
//   std::string fp = checkpoint_fingerprint(ck.shard_paths(), "bf16");
//   if (manifest["fingerprint"] != fp) repack();
//
// The fingerprint hashes (FNV-1a 64) every shard's resolved path, size, mtime (ns) and
// its safetensors header bytes (the 8-byte length and the JSON), plus a tag (the run
// dtype and the pack format version). Reading headers only: cheap even for 57 GB.
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wand::sched::exec {

// FNV-1a 64 over bytes, continuing from `h`.
std::uint64_t fnv1a64(const void* data, std::size_t n, std::uint64_t h = 14695981039346656037ull);
// 16 lowercase hex digits.
std::string hex64(std::uint64_t v);
// Throws wand::Error(kIo) naming the shard when it cannot be read.
std::string checkpoint_fingerprint(const std::vector<std::string>& shard_paths, const std::string& tag);

}  // namespace wand::sched::exec
