// Helpers of the memory tests: a temporary directory and files of random bytes.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace wand::memory::testing {

class TempDir {
 public:
  TempDir() {
    // Under the build tree: a real disk (O_DIRECT), unlike a tmpfs /tmp.
    std::string base = std::string(WAND_BINARY_DIR) + "/test-tmp";
    std::filesystem::create_directories(base);
    std::string tmpl = base + "/memXXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::uint8_t> v(n);
  std::mt19937_64 rng(seed);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t x = rng();
    for (int k = 0; k < 8; ++k) v[i + k] = static_cast<std::uint8_t>(x >> (8 * k));
  }
  for (; i < n; ++i) v[i] = static_cast<std::uint8_t>(rng());
  return v;
}

inline std::vector<std::uint8_t> write_random_file(const std::string& path, std::size_t n, std::uint64_t seed) {
  auto v = random_bytes(n, seed);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot create " + path);
  if (n && std::fwrite(v.data(), 1, n, f) != n) throw std::runtime_error("short write to " + path);
  std::fclose(f);
  return v;
}

}  // namespace wand::memory::testing
