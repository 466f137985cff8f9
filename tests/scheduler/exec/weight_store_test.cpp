// WeightStore on tiny experts: direct (bf16 release, bf16 run) and packed (fp32 release,
// bf16 run) paths, reuse across restarts, invalidation, truncation.
#include "scheduler/exec/weight_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::exec {
namespace {

namespace fs = std::filesystem;
using model::CheckpointDir;
using model::RunDtype;
using test::TempDir;

// Every block tensor materialised from the blob's host copy equals CheckpointDir::load
// converted to the run dtype, bit for bit.
void expect_blocks_match(const WeightStore& ws, const CheckpointDir& ck, memory::MemoryPool& pool,
                         at::ScalarType run) {
  ASSERT_EQ(ws.num_blocks(), ck.config().num_layers);
  for (std::int64_t i = 0; i < ws.num_blocks(); ++i) {
    const BlockBlob& b = ws.block(i);
    memory::PinnedCopy c = pool.acquire(b.id, pool.host_tier());
    ASSERT_EQ(c.bytes(), b.bytes);
    model::DitBlockWeights w = view_block_weights(b, c.data(), at::kCPU);
    const auto names = model::DitBlockWeights::tensor_names(i);
    const auto fields = w.fields();
    ASSERT_EQ(fields.size(), names.size());
    for (std::size_t k = 0; k < names.size(); ++k) {
      at::Tensor want = ck.load(names[k], run);
      ASSERT_EQ(fields[k]->scalar_type(), run) << names[k];
      ASSERT_TRUE(at::equal(*fields[k], want)) << names[k];
    }
  }
}

TEST(WeightStore, DirectBf16BlocksAreShardRanges) {
  TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "m", at::kBFloat16, 3);
  CheckpointDir ck(d);
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
  WeightStoreOptions o;
  o.run = RunDtype::kBFloat16;
  o.name = "hi";
  o.pack_dir = (tmp.path() / "spool").string();
  WeightStore ws = WeightStore::open(ck, pool, o);
  EXPECT_TRUE(ws.direct());
  EXPECT_FALSE(ws.repacked_now());
  EXPECT_FALSE(fs::exists(o.pack_dir));  // no second copy
  const auto shards = ck.shard_paths();
  for (const BlockBlob& b : ws.blocks()) {
    EXPECT_EQ(b.path, shards.at(0));
    std::uint64_t first = UINT64_MAX, end = 0;
    for (const BlockTensor& t : b.tensors) {
      const model::TensorInfo& ti = ck.info(t.name);
      first = std::min(first, ti.offset);
      end = std::max(end, ti.offset + ti.nbytes);
      EXPECT_EQ(t.offset, ti.offset - b.file_offset) << t.name;
    }
    EXPECT_EQ(b.file_offset, first);
    EXPECT_EQ(b.bytes, end - first);
    EXPECT_EQ(pool.find_blob(b.blob_name).value(), b.id);
  }
  EXPECT_EQ(ws.block(2).blob_name, "hi.block.2");
  expect_blocks_match(ws, ck, pool, at::kBFloat16);
}

TEST(WeightStore, Fp32ReleaseIsPackedToBf16AndReused) {
  TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "m", at::kFloat, 5);
  const std::string spool = (tmp.path() / "spool").string();
  WeightStoreOptions o;
  o.run = RunDtype::kBFloat16;
  o.pack_dir = spool;
  std::string packed;
  {
    CheckpointDir ck(d);
    memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
    WeightStore ws = WeightStore::open(ck, pool, o);
    EXPECT_FALSE(ws.direct());
    EXPECT_TRUE(ws.repacked_now());
    EXPECT_EQ(ws.packed_blocks(), ws.num_blocks());
    packed = ws.packed_path();
    EXPECT_EQ(fs::path(packed).parent_path(), fs::path(spool));
    EXPECT_EQ(fs::file_size(packed), ws.total_bytes());
    for (const BlockBlob& b : ws.blocks()) {
      EXPECT_EQ(b.file_offset % WeightStore::kBlockAlign, 0u);
      EXPECT_EQ(b.bytes % WeightStore::kBlockAlign, 0u);
      for (const BlockTensor& t : b.tensors) EXPECT_EQ(t.offset % WeightStore::kTensorAlign, 0u);
    }
    expect_blocks_match(ws, ck, pool, at::kBFloat16);
  }
  // A restart: the packed file is reused, not rewritten.
  const auto mtime = fs::last_write_time(packed);
  {
    CheckpointDir ck(d);
    memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
    WeightStore ws = WeightStore::open(ck, pool, o);
    EXPECT_FALSE(ws.repacked_now());
    EXPECT_EQ(ws.packed_path(), packed);
    EXPECT_EQ(fs::last_write_time(packed), mtime);
    expect_blocks_match(ws, ck, pool, at::kBFloat16);
  }
}

TEST(WeightStore, ChangedCheckpointInvalidatesThePack) {
  TempDir tmp;
  const fs::path d = tmp.path() / "m";
  test::write_expert(d, at::kFloat, 5);
  WeightStoreOptions o;
  o.pack_dir = (tmp.path() / "spool").string();
  {
    CheckpointDir ck(d);
    memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
    EXPECT_TRUE(WeightStore::open(ck, pool, o).repacked_now());
  }
  // New weights in the same place (same shapes, so the same headers): sizes and headers
  // are equal, the mtime differs (set explicitly so the test does not depend on the
  // file system's timestamp granularity).
  fs::remove_all(d);
  test::write_expert(d, at::kFloat, 6);
  CheckpointDir ck(d);
  for (const std::string& s : ck.shard_paths()) {
    fs::last_write_time(s, fs::last_write_time(s) + std::chrono::seconds(2));
  }
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
  WeightStore ws = WeightStore::open(ck, pool, o);
  EXPECT_TRUE(ws.repacked_now());
  expect_blocks_match(ws, ck, pool, at::kBFloat16);
}

TEST(WeightStore, TruncatedPackIsAClearError) {
  TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "m", at::kFloat, 5);
  WeightStoreOptions o;
  o.pack_dir = (tmp.path() / "spool").string();
  CheckpointDir ck(d);
  std::string packed;
  std::uint64_t full = 0;
  {
    memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
    WeightStore ws = WeightStore::open(ck, pool, o);
    packed = ws.packed_path();
    full = ws.total_bytes();
  }
  fs::resize_file(packed, full - 4096);
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
  try {
    WeightStore::open(ck, pool, o);
    FAIL() << "a truncated pack was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    EXPECT_NE(msg.find(packed), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(full)), std::string::npos) << msg;
  }
}

TEST(WeightStore, RepackWithoutPackDirIsRefused) {
  TempDir tmp;
  const fs::path d = test::write_expert(tmp.path() / "m", at::kFloat, 5, 2);
  CheckpointDir ck(d);
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
  WeightStoreOptions o;  // bf16 run, no pack dir
  try {
    WeightStore::open(ck, pool, o);
    FAIL() << "expected a config error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("pack directory"), std::string::npos) << e.what();
  }
}

TEST(WeightStore, BlockSplitAcrossShardsIsPacked) {
  TempDir tmp;
  // Small shards: some block's tensors straddle two shards, so the direct path is refused.
  const fs::path d = test::write_expert(tmp.path() / "m", at::kBFloat16, 8, 4, 150 * 1024);
  CheckpointDir ck(d);
  ASSERT_GT(ck.shard_paths().size(), 1u);
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 4ull << 20));
  WeightStoreOptions o;
  o.pack_dir = (tmp.path() / "spool").string();
  WeightStore ws = WeightStore::open(ck, pool, o);
  EXPECT_FALSE(ws.direct());
  EXPECT_GT(ws.packed_blocks(), 0);
  // Only the straddling blocks are packed; the others stay direct over their shard.
  const auto shards = ck.shard_paths();
  std::int64_t packed = 0;
  for (const BlockBlob& b : ws.blocks()) {
    if (b.path == ws.packed_path()) {
      ++packed;
    } else {
      EXPECT_NE(std::find(shards.begin(), shards.end(), b.path), shards.end()) << b.path;
    }
  }
  EXPECT_EQ(packed, ws.packed_blocks());
  expect_blocks_match(ws, ck, pool, at::kBFloat16);
}

}  // namespace
}  // namespace wand::sched::exec
