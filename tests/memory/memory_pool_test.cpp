#include "memory/memory_pool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "memory/disk_tier.h"
#include "tests/memory/test_util.h"

namespace wand::memory {
namespace {

using testing::TempDir;

PoolConfig small_config(std::uint64_t host, std::vector<std::uint64_t> devices, const std::string& disk_dir = "",
                        std::uint64_t disk = 0) {
  PoolConfig c;
  c.host_bytes = host;
  c.host_pinned = false;
  for (std::size_t i = 0; i < devices.size(); ++i) c.devices.push_back({static_cast<int>(i), devices[i], "cpu"});
  if (!disk_dir.empty()) c.disk = DiskConfig{disk_dir, disk};
  c.io.chunk_bytes = 64 * 1024;
  c.io.queue_depth = 8;
  return c;
}

void expect_bytes(const PinnedCopy& p, const std::vector<std::uint8_t>& src, std::uint64_t off) {
  ASSERT_NE(p.data(), nullptr);
  ASSERT_EQ(std::memcmp(p.data(), src.data() + off, p.bytes()), 0);
}

TEST(MemoryPool, FileBlobReachesHostAndDeviceWithTheSourceBytes) {
  TempDir dir;
  const auto src = testing::write_random_file(dir.file("shard.bin"), 1 << 20, 3);
  MemoryPool pool(small_config(4 << 20, {2 << 20}));
  const int dev = pool.device_tier(0);
  const BlobId b = pool.register_file_blob("w", dir.file("shard.bin"), 12345, 300001);
  EXPECT_EQ(pool.state(b, dev), CopyState::kAbsent);
  Completion c = pool.request(b, dev);
  c.wait();
  EXPECT_EQ(pool.state(b, dev), CopyState::kReady);
  EXPECT_EQ(pool.state(b, pool.host_tier()), CopyState::kReady);
  {
    PinnedCopy d = pool.pin(b, dev);
    expect_bytes(d, src, 12345);
    PinnedCopy h = pool.pin(b, pool.host_tier());
    expect_bytes(h, src, 12345);
    EXPECT_EQ(pool.tier(dev).stats().bytes_pinned, pool.tier(dev).round_up(300001));
    EXPECT_THROW(pool.evict(b, dev), wand::Error);  // pinned copies are never evicted
  }
  EXPECT_EQ(pool.tier(dev).stats().bytes_pinned, 0u);
  EXPECT_TRUE(pool.evict(b, dev));
  EXPECT_FALSE(pool.evict(b, dev));
  EXPECT_EQ(pool.tier(dev).stats().bytes_used, 0u);
  EXPECT_EQ(pool.state(b, pool.host_tier()), CopyState::kReady);
  // The host copy of a file-backed blob can always go: the file keeps the bytes.
  EXPECT_TRUE(pool.evict(b, pool.host_tier()));
  PinnedCopy again = pool.acquire(b, dev);
  expect_bytes(again, src, 12345);
}

TEST(MemoryPool, OneHostCopyFeedsSeveralDevices) {
  TempDir dir;
  const auto src = testing::write_random_file(dir.file("shard.bin"), 1 << 20, 4);
  MemoryPool pool(small_config(2 << 20, {1 << 20, 1 << 20, 1 << 20}));
  const BlobId b = pool.register_file_blob("w", dir.file("shard.bin"), 4096, 500000);
  std::vector<Completion> cs;
  for (int gpu = 0; gpu < 3; ++gpu) cs.push_back(pool.request(b, pool.device_tier(gpu)));
  for (auto& c : cs) c.wait();
  EXPECT_EQ(pool.tier(pool.host_tier()).stats().bytes_moved_in, 500000u);  // read from disk once
  EXPECT_EQ(pool.tier(pool.host_tier()).stats().bytes_moved_out, 3u * 500000);
  for (int gpu = 0; gpu < 3; ++gpu) {
    PinnedCopy p = pool.pin(b, pool.device_tier(gpu));
    expect_bytes(p, src, 4096);
    EXPECT_EQ(pool.tier(pool.device_tier(gpu)).stats().bytes_moved_in, 500000u);
  }
  EXPECT_EQ(pool.tier(pool.host_tier()).stats().bytes_pinned, 0u);  // transfer pins released
}

TEST(MemoryPool, OutOfMemoryCarriesTierRequestedFreeAndLargestExtent) {
  TempDir dir;
  testing::write_random_file(dir.file("shard.bin"), 1 << 20, 5);
  MemoryPool pool(small_config(1 << 20, {256 * 1024}));
  const int dev = pool.device_tier(0);
  const BlobId a = pool.register_file_blob("a", dir.file("shard.bin"), 0, 200 * 1024);
  const BlobId b = pool.register_file_blob("b", dir.file("shard.bin"), 0, 100 * 1024);
  PinnedCopy pa = pool.acquire(a, dev);  // pinned: cannot be evicted to make room
  try {
    pool.request(b, dev);
    FAIL() << "allocation beyond the device budget succeeded";
  } catch (const OutOfMemory& e) {
    EXPECT_EQ(e.tier(), "device0");
    EXPECT_EQ(e.bytes_requested(), 100u * 1024);
    EXPECT_EQ(e.bytes_free(), 56u * 1024);
    EXPECT_EQ(e.bytes_largest_free(), 56u * 1024);
  }
  // Nothing was left behind by the failed request.
  EXPECT_EQ(pool.state(b, dev), CopyState::kAbsent);
  EXPECT_EQ(pool.state(b, pool.host_tier()), CopyState::kAbsent);
  EXPECT_EQ(pool.tier(dev).stats().bytes_used, 200u * 1024);
  // Unpinned, the LRU ladder makes room.
  pa.reset();
  pool.request(b, dev).wait();
  EXPECT_EQ(pool.state(a, dev), CopyState::kAbsent);
  EXPECT_EQ(pool.state(b, dev), CopyState::kReady);
  // Without eviction allowed it is a typed failure again.
  RequestOptions no_evict;
  no_evict.evict = false;
  EXPECT_THROW(pool.request(a, dev, no_evict), OutOfMemory);
}

// Unscheduled use: a request that does not fit evicts the least recently used unpinned
// copy on the target tier (pool clock injected), and pinned copies are skipped.
TEST(MemoryPool, LruEvictsTheLeastRecentlyUsedCopy) {
  TempDir dir;
  testing::write_random_file(dir.file("shard.bin"), 1 << 20, 12);
  FakeClock clock;
  PoolDeps deps;
  deps.clock = &clock;
  MemoryPool pool(small_config(1 << 20, {3 * 64 * 1024}), deps);  // room for 3 blobs
  const int dev = pool.device_tier(0);
  std::vector<BlobId> b;
  for (int i = 0; i < 5; ++i) b.push_back(pool.register_file_blob("b" + std::to_string(i), dir.file("shard.bin"), i * 65536, 65536));
  auto use = [&](int i) {
    clock.advance();
    pool.acquire(b[i], dev);
  };
  use(0);
  use(1);
  use(2);
  use(0);  // 1 is now the least recently used
  use(3);
  EXPECT_EQ(pool.state(b[1], dev), CopyState::kAbsent);
  EXPECT_EQ(pool.state(b[0], dev), CopyState::kReady);
  EXPECT_EQ(pool.state(b[2], dev), CopyState::kReady);
  clock.advance();
  PinnedCopy keep = pool.acquire(b[2], dev);  // oldest after this: 0, but pin 2 anyway
  clock.advance();
  PinnedCopy keep0 = pool.pin(b[0], dev);     // 0 touched and pinned: 3 is the only victim
  use(4);
  EXPECT_EQ(pool.state(b[3], dev), CopyState::kAbsent);
  EXPECT_EQ(pool.state(b[0], dev), CopyState::kReady);
  EXPECT_EQ(pool.state(b[2], dev), CopyState::kReady);
  EXPECT_EQ(pool.state(b[4], dev), CopyState::kReady);
}

TEST(MemoryPool, TruncatedFileFailsThatBlobAndLeavesThePoolConsistent) {
  TempDir dir;
  const std::string path = dir.file("shard.bin");
  const auto src = testing::write_random_file(path, 1 << 20, 6);
  MemoryPool pool(small_config(2 << 20, {1 << 20}));
  const int dev = pool.device_tier(0);
  const int host = pool.host_tier();
  const BlobId good = pool.register_file_blob("good", path, 100, 200000);
  const BlobId bad = pool.register_file_blob("bad", path, 600000, 400000);
  ASSERT_EQ(::truncate(path.c_str(), 700000), 0);
  Completion c = pool.request(bad, dev);
  try {
    c.wait();
    FAIL() << "load of a blob past the end of the file succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_GE(e.offset(), 600000u & ~4095u);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_EQ(pool.state(bad, dev), CopyState::kAbsent);
  EXPECT_EQ(pool.state(bad, host), CopyState::kAbsent);
  EXPECT_EQ(pool.tier(host).stats().bytes_used, 0u);
  EXPECT_EQ(pool.tier(dev).stats().bytes_used, 0u);
  EXPECT_EQ(pool.tier(host).stats().bytes_pinned, 0u);
  EXPECT_EQ(pool.tier(host).stats().transfers_in_flight, 0u);
  PinnedCopy g = pool.acquire(good, dev);
  expect_bytes(g, src, 100);
  // A retry of the bad blob fails again, cleanly.
  EXPECT_THROW(pool.request(bad, dev).wait(), IoError);
  EXPECT_EQ(pool.tier(dev).stats().bytes_used, pool.tier(dev).round_up(200000));
}

TEST(MemoryPool, RegisterChecksTheFileRange) {
  TempDir dir;
  testing::write_random_file(dir.file("shard.bin"), 1000, 7);
  MemoryPool pool(small_config(1 << 20, {}));
  EXPECT_THROW(pool.register_file_blob("x", dir.file("shard.bin"), 900, 200), wand::Error);
  EXPECT_THROW(pool.register_file_blob("y", dir.file("missing.bin"), 0, 1), IoError);
  pool.register_file_blob("z", dir.file("shard.bin"), 0, 1000);
  EXPECT_THROW(pool.register_file_blob("z", dir.file("shard.bin"), 0, 10), wand::Error);  // name taken
}

TEST(MemoryPool, SpillBlobMovesDeviceHostDiskAndBack) {
  TempDir dir;
  MemoryPool pool(small_config(1 << 20, {1 << 20}, dir.path(), 4 << 20));
  const int dev = pool.device_tier(0), host = pool.host_tier(), disk = pool.disk_tier();
  ASSERT_GE(disk, 0);
  const std::uint64_t n = 123457;
  const BlobId s = pool.create_blob("latents", n);
  const auto data = testing::random_bytes(n, 11);
  {
    PinnedCopy d = pool.acquire(s, dev);  // fresh: allocated, nothing to copy
    std::memcpy(d.data(), data.data(), n);
  }
  // The only copy of a spill's data cannot be evicted.
  EXPECT_THROW(pool.evict(s, dev), wand::Error);
  pool.request(s, disk).wait();  // device -> host -> disk
  EXPECT_EQ(pool.state(s, host), CopyState::kReady);
  EXPECT_TRUE(pool.evict(s, dev));
  EXPECT_TRUE(pool.evict(s, host));
  EXPECT_EQ(pool.tier(host).stats().bytes_used, 0u);
  PinnedCopy back = pool.acquire(s, dev);  // disk -> host -> device
  ASSERT_EQ(std::memcmp(back.data(), data.data(), n), 0);
  EXPECT_EQ(pool.tier(disk).stats().bytes_moved_in, n);
  EXPECT_EQ(pool.tier(disk).stats().bytes_moved_out, n);
  back.reset();
  pool.drop_blob(s);
  EXPECT_EQ(pool.tier(disk).stats().bytes_used, 0u);
  EXPECT_EQ(pool.tier(dev).stats().bytes_used, 0u);
}

TEST(MemoryPool, BadConfigurationsNameTheProblem) {
  PoolConfig c = small_config(1 << 20, {});
  c.disk = DiskConfig{"/nonexistent/wand/spool", 1 << 20};
  try {
    MemoryPool pool(c);
    FAIL() << "a pool with a missing spool directory was built";
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/wand/spool"), std::string::npos) << e.what();
  }
  PoolConfig g = small_config(1 << 20, {});
  g.devices.push_back({0, 1 << 20, "cuda"});  // no CUDA factory in a plain pool
  try {
    MemoryPool pool(g);
    FAIL() << "a cuda device tier was built without CUDA";
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
}

TEST(MemoryPool, PinOfAnAbsentCopyIsAnError) {
  MemoryPool pool(small_config(1 << 20, {1 << 20}));
  const BlobId s = pool.create_blob("x", 100);
  EXPECT_THROW(pool.pin(s, pool.device_tier(0)), wand::Error);
  EXPECT_THROW(pool.device_tier(5), wand::Error);
  EXPECT_THROW(pool.state(s, 42), wand::Error);
}

TEST(MemoryPool, StatusJsonReportsEveryTier) {
  TempDir dir;
  testing::write_random_file(dir.file("shard.bin"), 1 << 20, 8);
  MemoryPool pool(small_config(2 << 20, {1 << 20}, dir.path(), 1 << 20));
  const BlobId b = pool.register_file_blob("w", dir.file("shard.bin"), 0, 1 << 19);
  pool.status_json();  // opens the interval
  PinnedCopy p = pool.acquire(b, pool.device_tier(0));
  nlohmann::json s = pool.status_json();
  ASSERT_EQ(s["tiers"].size(), 3u);
  const auto& host = s["tiers"][0];
  EXPECT_EQ(host["name"], "host");
  EXPECT_EQ(host["capacity_bytes"], 2u << 20);
  EXPECT_EQ(host["used_bytes"], 1u << 19);
  EXPECT_EQ(host["largest_free_bytes"], (2u << 20) - (1u << 19));
  EXPECT_EQ(host["bytes_moved_in"], 1u << 19);
  EXPECT_GT(host["gbps"].get<double>(), 0.0);
  const auto& dev = s["tiers"][2];
  EXPECT_EQ(dev["kind"], "device");
  EXPECT_EQ(dev["backend"], "cpu");
  EXPECT_EQ(dev["pinned_bytes"], 1u << 19);
  EXPECT_EQ(dev["transfers_in_flight"], 0u);
  EXPECT_EQ(s["tiers"][1]["kind"], "disk");
  EXPECT_EQ(s["blobs"], 1u);
  EXPECT_TRUE(s["io_engine"] == "io_uring" || s["io_engine"] == "psync");
}

}  // namespace
}  // namespace wand::memory
