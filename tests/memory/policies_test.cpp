#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <set>

#include "memory/belady_policy.h"
#include "memory/clock.h"
#include "memory/lru_policy.h"
#include "memory/memory_pool.h"
#include "memory/residency_manager.h"
#include "tests/memory/residency_script.h"
#include "tests/memory/test_util.h"

namespace wand::memory {
namespace {

std::vector<EvictionCandidate> cands(const std::set<BlobId>& ids) {
  std::vector<EvictionCandidate> out;
  for (BlobId id : ids) out.push_back({id, 1, 0});
  return out;
}

TEST(LruPolicy, EvictsLeastRecentlyUsedAndSkipsPinned) {
  FakeClock clock;
  LruPolicy lru(clock);
  for (BlobId id : {1, 2, 3}) {
    clock.advance();
    lru.on_access(id);
  }
  clock.advance();
  lru.on_access(1);  // 2 is now the oldest
  EXPECT_EQ(lru.choose_victim(cands({1, 2, 3})), BlobId{2});
  std::vector<EvictionCandidate> c = {{1, 1, 0}, {2, 1, 1}, {3, 1, 0}};
  EXPECT_EQ(lru.choose_victim(c), BlobId{3});  // 2 is pinned
  EXPECT_FALSE(lru.choose_victim({{2, 1, 1}}));
  lru.on_remove(3);  // forgotten: counts as never used
  EXPECT_EQ(lru.choose_victim(cands({1, 3})), BlobId{3});
}

// Demand paging with unit-size blobs and a cache of k: misses of a policy-driven run.
using Chooser = std::function<BlobId(const std::set<BlobId>& cache, std::size_t pos)>;
int simulate(const std::vector<BlobId>& s, std::size_t k, const Chooser& choose) {
  std::set<BlobId> cache;
  int misses = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (cache.count(s[i])) continue;
    ++misses;
    if (cache.size() == k) cache.erase(choose(cache, i));
    cache.insert(s[i]);
  }
  return misses;
}

// The optimum by exhaustive search over every eviction choice.
int brute_force(const std::vector<BlobId>& s, std::size_t k, std::size_t i, std::set<BlobId> cache) {
  for (; i < s.size() && cache.count(s[i]); ++i) {
  }
  if (i == s.size()) return 0;
  if (cache.size() < k) {
    cache.insert(s[i]);
    return 1 + brute_force(s, k, i + 1, cache);
  }
  int best = 1 << 30;
  for (BlobId v : cache) {
    std::set<BlobId> next = cache;
    next.erase(v);
    next.insert(s[i]);
    best = std::min(best, 1 + brute_force(s, k, i + 1, next));
  }
  return best;
}

TEST(BeladyPolicy, MatchesBruteForceOnSmallCases) {
  std::mt19937_64 rng(2024);
  int lru_worse = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t len = 4 + rng() % 9;
    const BlobId ids = 3 + rng() % 3;
    const std::size_t k = 2 + rng() % 2;
    std::vector<BlobId> s(len);
    for (auto& x : s) x = 1 + rng() % ids;

    BeladyPolicy belady(s);
    const int belady_misses = simulate(s, k, [&](const std::set<BlobId>& cache, std::size_t pos) {
      belady.set_position(pos);
      return *belady.choose_victim(cands(cache));
    });
    const int optimum = brute_force(s, k, 0, {});
    ASSERT_EQ(belady_misses, optimum) << "trial " << trial;

    // The residency manager with a demand-only window makes the same choices.
    std::vector<ScheduleEntry> sched;
    for (BlobId id : s) sched.push_back({id, 1});
    ResidencyManager rm(sched, k, 0);
    std::vector<ResidentCopy> resident;
    int rm_misses = 0;
    for (std::size_t pos = 0; pos < s.size(); ++pos) {
      ResidencyPlan p = rm.plan(pos, resident);
      ASSERT_TRUE(p.demand_fits);
      ASSERT_LE(p.prefetch.size(), 1u);
      rm_misses += static_cast<int>(p.prefetch.size());
      for (BlobId v : p.evict) {
        resident.erase(std::find_if(resident.begin(), resident.end(), [&](const auto& r) { return r.id == v; }));
      }
      for (BlobId v : p.prefetch) resident.push_back({v, 1, 0, true});
      ASSERT_LE(resident.size(), k);
    }
    ASSERT_EQ(rm_misses, optimum) << "trial " << trial;

    FakeClock clock;
    LruPolicy lru(clock);
    const int lru_misses = simulate(s, k, [&](const std::set<BlobId>& cache, std::size_t pos) {
      for (std::size_t j = 0; j < pos; ++j) {  // replay accesses up to pos
        clock.set(j + 1);
        lru.on_access(s[j]);
      }
      return *lru.choose_victim(cands(cache));
    });
    ASSERT_GE(lru_misses, optimum);
    if (lru_misses > optimum) ++lru_worse;
  }
  EXPECT_GT(lru_worse, 0);  // the comparison can tell the two apart
}

TEST(BeladyPolicy, NeverUsedAgainIsFarthestAndPinsAreRespected) {
  BeladyPolicy b({1, 2, 3, 1, 2});
  b.on_access(1);  // position 1
  EXPECT_EQ(b.position(), 1u);
  EXPECT_EQ(b.choose_victim(cands({1, 2, 4})), BlobId{4});     // 4 never used again
  EXPECT_EQ(b.choose_victim(cands({1, 2})), BlobId{1});        // next uses 3 vs 1
  EXPECT_EQ(b.choose_victim({{1, 1, 2}, {2, 1, 0}}), BlobId{2});  // 1 pinned
  EXPECT_FALSE(b.choose_victim({{1, 1, 1}}));
}

TEST(ResidencyManager, WorkedExampleFromTheNote) {
  // capacity 3 blocks, window 2 blocks, resident {A,B,C}, schedule D A B E C.
  const BlobId A = 1, B = 2, C = 3, D = 4, E = 5;
  ResidencyManager rm({{D, 10}, {A, 10}, {B, 10}, {E, 10}, {C, 10}}, 30, 20);
  ResidencyPlan p = rm.plan(0, {{A, 10, 0, true}, {B, 10, 0, true}, {C, 10, 0, true}});
  EXPECT_EQ(p.evict, std::vector<BlobId>{C});
  EXPECT_EQ(p.prefetch, std::vector<BlobId>{D});
  EXPECT_EQ(p.bytes_resident_after, 30u);
}

TEST(ResidencyManager, KeepsThePrefetchWindowFull) {
  // Six 10-byte blocks used in a cycle twice; room for 4, window of 3.
  std::vector<ScheduleEntry> s;
  for (int rep = 0; rep < 2; ++rep)
    for (BlobId id = 1; id <= 6; ++id) s.push_back({id, 10});
  ResidencyManager rm(s, 40, 30);
  ResidencyPlan p0 = rm.plan(0, {});
  EXPECT_EQ(p0.prefetch, (std::vector<BlobId>{1, 2, 3}));
  EXPECT_TRUE(p0.evict.empty());
  // At position 1 with 1..3 resident, block 4 joins the window.
  std::vector<ResidentCopy> r = {{1, 10, 0, true}, {2, 10, 0, true}, {3, 10, 0, true}};
  ResidencyPlan p1 = rm.plan(1, r);
  EXPECT_EQ(p1.prefetch, (std::vector<BlobId>{4}));
  EXPECT_TRUE(p1.evict.empty());
  // At position 2 with 1..4 resident and full: 5 needs room; of the copies outside the
  // window, 2's next use (7) is farther than 1's (6) -> evict 2.
  r.push_back({4, 10, 0, true});
  ResidencyPlan p2 = rm.plan(2, r);
  EXPECT_EQ(p2.evict, (std::vector<BlobId>{2}));
  EXPECT_EQ(p2.prefetch, (std::vector<BlobId>{5}));
  // A pinned copy is never a victim: with 2 pinned, 1 goes.
  r[1].pins = 1;
  ResidencyPlan p3 = rm.plan(2, r);
  EXPECT_EQ(p3.evict, (std::vector<BlobId>{1}));
  EXPECT_EQ(p3.prefetch, (std::vector<BlobId>{5}));
  // Nor is a loading one: with 1 loading too, nothing can go and 5 waits.
  r[0].ready = false;
  ResidencyPlan p4 = rm.plan(2, r);
  EXPECT_TRUE(p4.evict.empty());
  EXPECT_TRUE(p4.prefetch.empty());
  EXPECT_TRUE(p4.demand_fits);  // the demand (3) is resident
}

TEST(ResidencyManager, DemandThatCannotFitIsReported) {
  ResidencyManager rm({{1, 10}, {2, 10}}, 15, 0);
  ResidencyPlan p = rm.plan(1, {{1, 10, 1, true}});  // 1 pinned, 2 does not fit beside it
  EXPECT_FALSE(p.demand_fits);
  EXPECT_TRUE(p.prefetch.empty());
}

TEST(ResidencyManager, RandomSchedulesNeverExceedTheBudget) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::uint64_t> sizes(6);
    for (auto& x : sizes) x = 1 + rng() % 20;
    std::vector<ScheduleEntry> s;
    for (int i = 0; i < 30; ++i) {
      const BlobId id = rng() % sizes.size();
      s.push_back({id, sizes[id]});
    }
    const std::uint64_t cap = 20 + rng() % 40;
    ResidencyManager rm(s, cap, rng() % 50);
    std::vector<ResidentCopy> resident;
    for (std::size_t pos = 0; pos < s.size(); ++pos) {
      ResidencyPlan p = rm.plan(pos, resident);
      for (BlobId v : p.evict) {
        resident.erase(std::find_if(resident.begin(), resident.end(), [&](const auto& r) { return r.id == v; }));
      }
      for (BlobId v : p.prefetch) resident.push_back({v, sizes[v], 0, true});
      std::uint64_t used = 0;
      for (const auto& r : resident) used += r.bytes;
      ASSERT_LE(used, cap);
      ASSERT_EQ(used, p.bytes_resident_after);
      ASSERT_TRUE(p.demand_fits);  // every blob fits alone (size <= 20 <= cap)
      ASSERT_TRUE(std::any_of(resident.begin(), resident.end(), [&](const auto& r) { return r.id == s[pos].id; }));
    }
  }
}

// The residency script on the CPU device tier: every use sees the source bytes, the budget
// holds, and the bytes moved are exactly the planned prefetches.
TEST(ResidencyScript, RunsOnTheCpuDeviceTier) {
  testing::TempDir dir;
  const std::string path = dir.file("shard.bin");
  const std::uint64_t block = 96 * 1024 + 123;
  const auto src = testing::write_random_file(path, 8 * block + 5000, 31);
  PoolConfig cfg;
  cfg.host_bytes = 6 * 100 * 1024;  // room for 6 of the 8 blocks: staging evicts host copies (LRU)
  cfg.host_pinned = false;
  cfg.devices = {{0, 4 * 96 * 1024 + 4096, "cpu"}};  // room for 4 blocks
  MemoryPool pool(cfg);
  std::vector<BlobId> blobs;
  for (int i = 0; i < 8; ++i) {
    blobs.push_back(pool.register_file_blob("blk" + std::to_string(i), path, 777 + i * block, block));
  }
  std::vector<std::size_t> order;
  for (int step = 0; step < 3; ++step)
    for (std::size_t i = 0; i < 8; ++i) order.push_back(step % 2 ? 7 - i : i);
  const int dev = pool.device_tier(0);
  testing::ScriptResult r = testing::run_residency_script(pool, dev, blobs, order, 2 * block);
  ASSERT_EQ(r.checksums.size(), order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(r.checksums[i], testing::fnv1a(src.data() + 777 + order[i] * block, block)) << "use " << i;
  }
  EXPECT_LE(r.peak_device_used, pool.tier(dev).bytes_capacity());
  std::size_t prefetches = 0;
  for (const auto& d : r.decisions) prefetches += static_cast<std::size_t>(std::count(d.begin(), d.end(), ',')) ;
  // Each prefetch and each eviction id is followed by a comma; bytes in = prefetches.
  std::uint64_t in_blocks = r.device_bytes_in / block;
  EXPECT_EQ(r.device_bytes_in % block, 0u);
  EXPECT_LE(in_blocks, prefetches);
  EXPECT_LT(in_blocks, order.size());  // the reversal reuses resident blocks
  EXPECT_EQ(r.device_bytes_out, order.size() * block);  // the read-backs
}

}  // namespace
}  // namespace wand::memory
