// The repository's copy of the golden reference set (tests/data/golden, issue 14) is whole:
// every file MANIFEST.json lists exists with its size and sha256, and no data file is there
// that the manifest does not list. A damaged or partial copy fails here, by name, before the
// parity tests that read it fail for reasons that are harder to see.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/golden_dir.h"

namespace fs = std::filesystem;

namespace {

// SHA-256 (FIPS 180-4) of a file, as lowercase hex. Small and test-only: the manifest check
// needs nothing else, and shelling out to sha256sum would make the test depend on a tool.
class Sha256 {
 public:
  void update(const std::uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      buf_[len_++ % 64] = p[i];
      if (len_ % 64 == 0) block(buf_.data());
    }
  }
  std::string hex() {
    const std::uint64_t bits = len_ * 8;
    const std::uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (len_ % 64 != 56) update(&zero, 1);
    for (int i = 7; i >= 0; --i) {
      const auto b = static_cast<std::uint8_t>(bits >> (8 * i));
      update(&b, 1);
    }
    char out[65];
    for (int i = 0; i < 8; ++i) std::snprintf(out + 8 * i, 9, "%08x", h_[static_cast<std::size_t>(i)]);
    return std::string(out, 64);
  }

 private:
  static std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void block(const std::uint8_t* p) {
    static constexpr std::array<std::uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (std::uint32_t{p[4 * i]} << 24) | (std::uint32_t{p[4 * i + 1]} << 16) |
             (std::uint32_t{p[4 * i + 2]} << 8) | std::uint32_t{p[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                               k[static_cast<std::size_t>(i)] + w[i];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d; h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
  }
  std::array<std::uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::uint8_t, 64> buf_{};
  std::uint64_t len_ = 0;
};

std::string sha256_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  Sha256 h;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(reinterpret_cast<const std::uint8_t*>(buf.data()), static_cast<std::size_t>(in.gcount()));
  }
  return h.hex();
}

// README.md is documentation, edited in the steering repo after the manifest was written (its
// hash no longer matches there either); every data file must match.
bool is_doc(const std::string& rel) { return rel == "README.md"; }

}  // namespace

TEST(GoldenManifest, Sha256OfKnownVectors) {
  const fs::path p = fs::temp_directory_path() / "wand_sha256_probe.txt";
  std::ofstream(p, std::ios::binary) << "abc";
  EXPECT_EQ(sha256_of(p), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::ofstream(p, std::ios::binary | std::ios::trunc);  // empty
  EXPECT_EQ(sha256_of(p), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  fs::remove(p);
}

TEST(GoldenManifest, EveryListedFileHasItsSizeAndSha256) {
  const fs::path root = wand::test::golden_root();
  WAND_REQUIRE_DATA(root / "MANIFEST.json");
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(std::ifstream(root / "MANIFEST.json"));
  } catch (const std::exception& e) {
    FAIL() << (root / "MANIFEST.json").string() << ": not JSON: " << e.what();
  }
  ASSERT_TRUE(m.is_array() && !m.empty()) << "MANIFEST.json: expected a non-empty array";
  std::set<std::string> listed;
  for (const auto& e : m) {
    const std::string rel = e.at("path").get<std::string>();
    listed.insert(rel);
    const fs::path p = root / rel;
    if (!fs::exists(p)) {
      ADD_FAILURE() << "golden file missing: " << p.string();
      continue;
    }
    if (is_doc(rel)) continue;
    EXPECT_EQ(fs::file_size(p), e.at("bytes").get<std::uint64_t>()) << p.string() << ": size";
    EXPECT_EQ(sha256_of(p), e.at("sha256").get<std::string>()) << p.string() << ": sha256 (damaged copy?)";
  }
  for (const auto& it : fs::recursive_directory_iterator(root)) {
    if (!it.is_regular_file()) continue;
    const std::string rel = fs::relative(it.path(), root).generic_string();
    if (rel == "MANIFEST.json") continue;
    EXPECT_TRUE(listed.count(rel)) << "golden file not in MANIFEST.json: " << it.path().string();
  }
}
