// Randomized multi-threaded allocate / prefetch / pin / evict: budgets hold at every
// step, bytes read through pins equal the source, and the pool is consistent at the end.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "memory/memory_pool.h"
#include "tests/memory/test_util.h"

namespace wand::memory {
namespace {

void check_budgets(MemoryPool& pool) {
  for (std::size_t t = 0; t < pool.tier_count(); ++t) {
    const TierStats s = pool.tier(static_cast<int>(t)).stats();
    ASSERT_LE(s.bytes_used, s.bytes_capacity) << s.name;
    ASSERT_LE(s.bytes_pinned, s.bytes_used) << s.name;
    ASSERT_LE(s.bytes_largest_free, s.bytes_capacity - s.bytes_used) << s.name;
  }
}

TEST(PoolStress, BudgetsHoldUnderRandomConcurrentUse) {
  testing::TempDir dir;
  const std::string path = dir.file("shard.bin");
  const std::size_t file_bytes = 4 << 20;
  const auto src = testing::write_random_file(path, file_bytes, 77);
  PoolConfig cfg;
  cfg.host_bytes = 3 << 20;
  cfg.host_pinned = false;
  cfg.devices = {{0, 2 << 20, "cpu"}, {1, 1 << 20, "cpu"}};
  cfg.disk = DiskConfig{dir.path(), 2 << 20};
  cfg.io.chunk_bytes = 64 * 1024;
  cfg.io.queue_depth = 8;
  MemoryPool pool(cfg);
  const std::vector<int> tiers = {pool.host_tier(), pool.device_tier(0), pool.device_tier(1)};

  struct B {
    BlobId id;
    std::uint64_t off, n;
  };
  std::vector<B> blobs;
  std::mt19937_64 rng(123);
  for (int i = 0; i < 24; ++i) {
    const std::uint64_t n = 10000 + rng() % 500000;
    const std::uint64_t off = rng() % (file_bytes - n);
    blobs.push_back({pool.register_file_blob("b" + std::to_string(i), path, off, n), off, n});
  }
  // Spills too: created empty on a device, copied to disk, dropped and recreated.
  std::atomic<int> verified{0}, oom{0}, refused{0};
  std::atomic<bool> failed{false};
  auto worker = [&](int seed) {
    std::mt19937_64 r(static_cast<std::uint64_t>(seed));
    std::vector<Completion> pending;
    for (int op = 0; op < 400 && !failed; ++op) {
      const B& b = blobs[r() % blobs.size()];
      const int t = tiers[r() % tiers.size()];
      try {
        switch (r() % 5) {
          case 0:  // prefetch without waiting
            pending.push_back(pool.request(b.id, t));
            break;
          case 1: {  // use: pin and read
            PinnedCopy p = pool.acquire(b.id, t);
            if (std::memcmp(p.data(), src.data() + b.off, b.n) != 0) failed = true;
            ++verified;
            break;
          }
          case 2:
            pool.evict(b.id, t);
            break;
          case 3: {
            RequestOptions o;
            o.evict = false;
            pending.push_back(pool.request(b.id, t, o));
            break;
          }
          case 4: {  // a spill: made on a device, written to disk, read back on the host
            const std::uint64_t n = 1000 + r() % 200000;
            const BlobId s = pool.create_blob("spill-" + std::to_string(seed) + "-" + std::to_string(op), n);
            const auto data = testing::random_bytes(n, r());
            try {
              {
                PinnedCopy d = pool.acquire(s, tiers[1 + r() % 2]);
                std::memcpy(d.data(), data.data(), n);
              }
              pool.request(s, pool.disk_tier()).wait();
              for (int t2 : tiers) {
                try {
                  pool.evict(s, t2);
                } catch (const wand::Error&) {
                  // pinned by a transfer still reading it: fine
                }
              }
              PinnedCopy h = pool.acquire(s, pool.host_tier());
              if (std::memcmp(h.data(), data.data(), n) != 0) failed = true;
              ++verified;
            } catch (...) {
              pool.drop_blob(s);
              throw;
            }
            pool.drop_blob(s);
            break;
          }
        }
      } catch (const OutOfMemory& e) {
        if (e.bytes_requested() <= e.bytes_largest_free()) failed = true;  // it did fit
        ++oom;
      } catch (const wand::Error& e) {
        if (e.code() != ErrorCode::kBadRequest) failed = true;
        ++refused;  // evict of a pinned / loading copy
      }
      check_budgets(pool);
    }
    for (auto& c : pending) {
      try {
        c.wait();
      } catch (...) {
        failed = true;  // no I/O errors expected here
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(worker, 1000 + i);
  for (auto& th : threads) th.join();
  EXPECT_FALSE(failed);
  EXPECT_GT(verified.load(), 50);
  // Consistency: used bytes are exactly the resident extents; no pins, nothing in flight.
  for (int t : tiers) {
    std::uint64_t sum = 0;
    for (const auto& rc : pool.resident(t)) {
      EXPECT_TRUE(rc.ready);
      EXPECT_EQ(rc.pins, 0u);
      sum += rc.bytes;
    }
    const TierStats s = pool.tier(t).stats();
    EXPECT_EQ(s.bytes_used, sum) << s.name;
    EXPECT_EQ(s.bytes_pinned, 0u) << s.name;
    EXPECT_EQ(s.transfers_in_flight, 0u) << s.name;
  }
  // Everything still loads correctly afterwards.
  for (const auto& b : blobs) {
    PinnedCopy p = pool.acquire(b.id, pool.device_tier(0));
    ASSERT_EQ(std::memcmp(p.data(), src.data() + b.off, b.n), 0);
  }
  std::printf("stress: verified=%d oom=%d refused=%d\n", verified.load(), oom.load(), refused.load());
}

}  // namespace
}  // namespace wand::memory
