// Small helpers of the memory benchmarks: timing, argument parsing, test files.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace wand::bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// --name value arguments.
inline std::string arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return def;
}

inline bool flag(int argc, char** argv, const std::string& name) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == "--" + name) return true;
  }
  return false;
}

// Creates (or reuses, when it already has the size) a file of pseudo-random bytes.
inline bool ensure_file(const std::string& path, std::uint64_t bytes) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    const off_t sz = ::lseek(fd, 0, SEEK_END);
    ::close(fd);
    if (sz == static_cast<off_t>(bytes)) return true;
  }
  fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "cannot create %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  std::vector<std::uint64_t> buf((64u << 20) / 8);
  std::mt19937_64 rng(1);
  for (auto& x : buf) x = rng();
  std::uint64_t done = 0;
  while (done < bytes) {
    const std::uint64_t n = std::min<std::uint64_t>(bytes - done, buf.size() * 8);
    buf[0] ^= done;  // different bytes in every 64 MiB
    if (::write(fd, buf.data(), n) != static_cast<ssize_t>(n)) {
      std::fprintf(stderr, "write to %s failed\n", path.c_str());
      ::close(fd);
      return false;
    }
    done += n;
  }
  ::fsync(fd);
  ::close(fd);
  return true;
}

inline std::uint64_t file_size(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  const off_t sz = ::lseek(fd, 0, SEEK_END);
  ::close(fd);
  return sz < 0 ? 0 : static_cast<std::uint64_t>(sz);
}

}  // namespace wand::bench
