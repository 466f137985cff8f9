#include "scheduler/exec/fingerprint.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace wand::sched::exec {

std::uint64_t fnv1a64(const void* data, std::size_t n, std::uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string checkpoint_fingerprint(const std::vector<std::string>& shard_paths, const std::string& tag) {
  std::uint64_t h = fnv1a64(tag.data(), tag.size());
  for (const std::string& path : shard_paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      throw Error(ErrorCode::kIo, "fingerprint: cannot stat shard " + path + ": " + std::strerror(errno));
    }
    const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    const std::uint64_t mtime_ns =
        static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(st.st_mtim.tv_nsec);
    h = fnv1a64(path.data(), path.size() + 1, h);  // with the terminating NUL as a separator
    h = fnv1a64(&size, sizeof size, h);
    h = fnv1a64(&mtime_ns, sizeof mtime_ns, h);
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) throw Error(ErrorCode::kIo, "fingerprint: cannot open shard " + path + ": " + std::strerror(errno));
    unsigned char len8[8];
    std::uint64_t header_len = 0;
    if (std::fread(len8, 1, 8, f) == 8) {
      for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len8[i];
    }
    if (header_len > size || header_len > (100ull << 20)) {
      std::fclose(f);
      throw Error(ErrorCode::kModelFormat, "fingerprint: shard " + path + " has a bad safetensors header length " +
                                               std::to_string(header_len));
    }
    std::vector<char> header(header_len);
    const std::size_t got = header_len ? std::fread(header.data(), 1, header_len, f) : 0;
    std::fclose(f);
    if (got != header_len) throw Error(ErrorCode::kIo, "fingerprint: short read of the header of " + path);
    h = fnv1a64(len8, 8, h);
    h = fnv1a64(header.data(), header.size(), h);
  }
  return hex64(h);
}

}  // namespace wand::sched::exec
