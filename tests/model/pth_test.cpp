// PthFile / PthWriter: the golden .pth files written by torch 2.11 torch.save,
// cross-checked against LibTorch's own zip-pickle reader (torch::pickle_load);
// round trips through PthWriter; truncated / corrupt / compressed files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/error.h"
#include "common/torch_compat.h"
#include "model/pth.h"
#include "tests/golden_dir.h"

namespace fs = std::filesystem;
using wand::model::PthFile;
using wand::model::PthWriter;

namespace {

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

fs::path tmp_dir() {
  fs::path d = fs::temp_directory_path() / ("wand_pth_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// torch::pickle_load of a whole (small) file as name -> tensor.
std::map<std::string, at::Tensor> reference_load(const std::string& path) {
  torch::IValue v = torch::pickle_load(slurp(path));
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : v.toGenericDict()) out[kv.key().toStringRef()] = kv.value().toTensor();
  return out;
}

void expect_same_as_reference(const std::string& path) {
  PthFile f(path);
  auto ref = reference_load(path);
  ASSERT_EQ(f.names().size(), ref.size()) << path;
  for (const auto& name : f.names()) {
    ASSERT_TRUE(ref.count(name)) << name;
    const at::Tensor& r = ref.at(name);
    at::Tensor t = f.load(name);
    EXPECT_EQ(t.scalar_type(), r.scalar_type()) << name;
    EXPECT_EQ(t.sizes(), r.sizes()) << name;
    EXPECT_TRUE(at::equal(t, r.contiguous())) << name;
    EXPECT_EQ(f.info(name).nbytes, static_cast<std::uint64_t>(r.numel()) * r.element_size()) << name;
  }
}

std::string golden(const std::string& rel) { return wand::test::golden_root().string() + "/" + rel; }
const char* const kT5 = "t5/models_t5_umt5-xxl-enc-bf16.pth";

}  // namespace

TEST(PthFile, GoldenT5MatchesLibTorchReader) {
  const std::string path = golden("t5/models_t5_umt5-xxl-enc-bf16.pth");
  PthFile f(path);
  EXPECT_EQ(f.archive_name(), "models_t5_umt5-xxl-enc-bf16");
  EXPECT_EQ(f.names().size(), 22u);
  for (const auto& n : f.names()) {
    const auto& ti = f.info(n);
    EXPECT_EQ(ti.dtype, at::kBFloat16) << n;
    EXPECT_EQ(ti.offset % 64, 0u) << n;  // torch aligns storages
    EXPECT_TRUE(f.is_contiguous(n)) << n;
  }
  EXPECT_EQ(f.info("token_embedding.weight").shape, (std::vector<int64_t>{300, 64}));
  EXPECT_EQ(f.info("blocks.1.pos_embedding.embedding.weight").shape, (std::vector<int64_t>{32, 4}));
  EXPECT_EQ(f.info("blocks.0.ffn.fc2.weight").shape, (std::vector<int64_t>{64, 160}));
  expect_same_as_reference(path);
  // Conversion on load: bf16 -> fp32 is exact.
  at::Tensor w = f.load("norm.weight", at::kFloat);
  EXPECT_EQ(w.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(w.to(at::kBFloat16), f.load("norm.weight")));
}

TEST(PthFile, GoldenVaesMatchLibTorchReader) {
  for (const char* rel : {"vae21/Wan2.1_VAE.pth", "vae22/Wan2.2_VAE.pth"}) {
    PthFile f(golden(rel));
    EXPECT_GT(f.names().size(), 100u) << rel;
    for (const auto& n : f.names()) EXPECT_EQ(f.info(n).dtype, at::kFloat) << n;
    expect_same_as_reference(golden(rel));
  }
}

TEST(PthWriter, RoundTripAndLibTorchReadsIt) {
  const fs::path dir = tmp_dir();
  at::manual_seed(7);
  std::map<std::string, at::Tensor> ts = {
      {"a.weight", at::randn({17, 5}).to(at::kBFloat16)},
      {"b", at::randn({3, 4, 5}, at::kDouble)},
      {"c.half", at::randn({9}).to(at::kHalf)},
      {"d.long", at::arange(0, 300, at::kLong)},
      {"e.scalar", at::full({}, 2.5f)},
      {"f.empty", at::empty({0, 4})},
      {"g.bool", at::rand({6}) > 0.5},
  };
  for (bool zip64 : {false, true}) {
    const std::string path = (dir / (zip64 ? "z64.pth" : "rt.pth")).string();
    {
      PthWriter w(path);
      w.set_force_zip64(zip64);
      for (auto& kv : ts) w.declare(kv.first, kv.second.scalar_type(), kv.second.sizes().vec());
      for (auto& kv : ts) w.write(kv.first, kv.second);
      w.finish();
    }
    PthFile f(path);
    EXPECT_EQ(f.archive_name(), zip64 ? "z64" : "rt");
    ASSERT_EQ(f.names().size(), ts.size());
    for (auto& kv : ts) {
      at::Tensor t = f.load(kv.first);
      EXPECT_EQ(t.scalar_type(), kv.second.scalar_type()) << kv.first;
      EXPECT_TRUE(at::equal(t, kv.second)) << kv.first;
      EXPECT_EQ(f.info(kv.first).offset % 64, 0u) << kv.first;
    }
    // LibTorch's reader (miniz: checks CRCs and the zip structure) reads it too.
    auto ref = reference_load(path);
    ASSERT_EQ(ref.size(), ts.size());
    for (auto& kv : ts) EXPECT_TRUE(at::equal(ref.at(kv.first), kv.second)) << kv.first;
  }
  fs::remove_all(dir);
}

TEST(PthWriter, StreamsBytesInChunksAndChecksOrder) {
  const fs::path dir = tmp_dir();
  const std::string path = (dir / "chunks.pth").string();
  at::Tensor big = at::randn({1000, 333});
  {
    PthWriter w(path);
    w.declare("x", at::kFloat, {1000, 333});
    w.declare("y", at::kFloat, {2});
    EXPECT_THROW(w.write("y", at::zeros({2})), wand::Error);  // out of order
    const char* p = static_cast<const char*>(big.data_ptr());
    const std::uint64_t n = big.numel() * 4;
    for (std::uint64_t off = 0; off < n; off += 100003) w.write_bytes("x", p + off, std::min<std::uint64_t>(100003, n - off));
    EXPECT_THROW(w.finish(), wand::Error);  // y missing
    w.write("y", at::ones({2}));
    w.finish();
  }
  PthFile f(path);
  EXPECT_TRUE(at::equal(f.load("x"), big));
  EXPECT_TRUE(at::equal(f.load("y"), at::ones({2})));
  fs::remove_all(dir);
}

TEST(PthFile, ReadsStridedViewsWrittenByLibTorch) {
  // torch::pickle_save writes views with their storage offset and strides.
  const fs::path dir = tmp_dir();
  const std::string path = (dir / "views.pth").string();
  at::Tensor base = at::arange(0, 60, at::kFloat).reshape({6, 10});
  c10::Dict<std::string, at::Tensor> d;
  d.insert("t", base.t());
  d.insert("slice", base.narrow(0, 2, 3));
  d.insert("cols", base.narrow(1, 3, 4));
  spit(path, torch::pickle_save(torch::IValue(d)));
  PthFile f(path);
  EXPECT_FALSE(f.is_contiguous("t"));
  EXPECT_TRUE(f.is_contiguous("slice"));
  EXPECT_EQ(f.info("slice").offset - f.info("t").offset, 20u * 4);  // storage offset applied
  EXPECT_TRUE(at::equal(f.load("t"), base.t()));
  EXPECT_TRUE(at::equal(f.load("slice"), base.narrow(0, 2, 3)));
  EXPECT_TRUE(at::equal(f.load("cols"), base.narrow(1, 3, 4)));
  EXPECT_TRUE(at::equal(f.load("cols", at::kDouble), base.narrow(1, 3, 4).to(at::kDouble)));
  fs::remove_all(dir);
}

namespace {
wand::ErrorCode error_of(const std::string& path) {
  try {
    PthFile f(path);
    for (const auto& n : f.names()) f.load(n);
  } catch (const wand::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    return e.code();
  }
  ADD_FAILURE() << path << " was accepted";
  return wand::ErrorCode::kInternal;
}
}  // namespace

TEST(PthFile, RejectsTruncatedCorruptAndCompressedFiles) {
  const fs::path dir = tmp_dir();
  WAND_REQUIRE_DATA(golden(kT5));
  const std::vector<char> good = slurp(golden(kT5));
  // The corruptions below index into the file: it must be the golden T5 (a few hundred KiB).
  ASSERT_GT(good.size(), 4096u) << golden(kT5) << " is too short to be the golden T5 .pth";
  const std::string p = (dir / "bad.pth").string();
  // Truncated: the directory at the end is gone.
  spit(p, std::vector<char>(good.begin(), good.begin() + good.size() / 2));
  EXPECT_EQ(error_of(p), wand::ErrorCode::kModelFormat);
  spit(p, std::vector<char>(good.begin(), good.begin() + 10));
  EXPECT_EQ(error_of(p), wand::ErrorCode::kModelFormat);
  // A flipped byte inside data.pkl fails its CRC.
  std::vector<char> bad = good;
  bad[200] ^= 0x5A;
  spit(p, bad);
  EXPECT_EQ(error_of(p), wand::ErrorCode::kModelFormat);
  // A compressed (deflate) entry: set the method field of each central directory entry.
  bad = good;
  for (std::size_t i = 0; i + 4 < bad.size(); ++i) {
    if (bad[i] == 'P' && bad[i + 1] == 'K' && bad[i + 2] == 1 && bad[i + 3] == 2) bad[i + 10] = 8;
  }
  spit(p, bad);
  try {
    PthFile f(p);
    ADD_FAILURE() << "compressed entry accepted";
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), wand::ErrorCode::kModelFormat);
    EXPECT_NE(std::string(e.what()).find("compressed"), std::string::npos) << e.what();
  }
  // Not a zip at all.
  spit(p, std::vector<char>(1000, 'x'));
  EXPECT_EQ(error_of(p), wand::ErrorCode::kModelFormat);
  // Unknown key.
  PthFile f(golden("t5/models_t5_umt5-xxl-enc-bf16.pth"));
  EXPECT_THROW(f.info("no.such.key"), wand::Error);
  fs::remove_all(dir);
}
