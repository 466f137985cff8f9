// CudaTier and the CUDA pool deps. Labels memory;gpu: they run for real on a GPU machine
// and GTEST_SKIP where no CUDA device is usable.
#include "memory/cuda/cuda_tier.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "memory/cuda/cuda_check.h"
#include "memory/cuda/pinned_host.h"
#include "memory/memory_pool.h"
#include "tests/memory/residency_script.h"
#include "tests/memory/test_util.h"

namespace wand::memory {
namespace {

#define REQUIRE_GPU()                                                            \
  do {                                                                           \
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device usable here"; \
  } while (0)

TEST(CudaCheck, ThrowsWithExpressionFileAndLine) {
  try {
    WAND_CUDA_CHECK(cudaSetDevice(9999));
    FAIL() << "cudaSetDevice(9999) succeeded";
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCuda);
    const std::string m = e.what();
    EXPECT_NE(m.find("cudaSetDevice(9999)"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda_tier_test.cpp"), std::string::npos) << m;
  }
}

TEST(CudaTier, HostDeviceRoundTrip) {
  REQUIRE_GPU();
  const std::uint64_t n = (8 << 20) + 333;
  HostRegion host = cuda::pinned_host_region(2 * n);
  ASSERT_STREQ(host.how, "cudaHostAlloc");
  const auto data = testing::random_bytes(n, 1);
  std::memcpy(host.data, data.data(), n);
  {
    cuda::CudaTier dev(0, 64 << 20);
    Extent e = dev.allocate(n);
    dev.copy_in(host.data, e.offset, n).wait();
    std::memset(host.data + n, 0, n);
    dev.copy_out(e.offset, host.data + n, n).wait();
    EXPECT_EQ(std::memcmp(host.data + n, data.data(), n), 0);
    const TierStats s = dev.stats();
    EXPECT_EQ(s.bytes_moved_in, n);
    EXPECT_EQ(s.bytes_moved_out, n);
    EXPECT_EQ(s.transfers_in_flight, 0u);
  }
  host.release(host.data, host.bytes);
}

TEST(CudaTier, BudgetHoldsAndOutOfMemoryIsTyped) {
  REQUIRE_GPU();
  cuda::CudaTier dev(0, 1 << 20);
  Extent a = dev.allocate(700 * 1024);
  try {
    dev.allocate(400 * 1024);
    FAIL() << "allocation beyond the tier budget succeeded";
  } catch (const OutOfMemory& e) {
    EXPECT_EQ(e.tier(), "device0");
    EXPECT_EQ(e.bytes_requested(), 400u * 1024);
    EXPECT_EQ(e.bytes_free(), (1u << 20) - 700u * 1024);
  }
  dev.free(a);
  EXPECT_EQ(dev.stats().bytes_used, 0u);
}

TEST(CudaPool, OnePinnedHostCopyFeedsEveryDevice) {
  REQUIRE_GPU();
  testing::TempDir dir;
  const std::string path = dir.file("shard.bin");
  const std::uint64_t n = (16 << 20) + 4321;
  const auto src = testing::write_random_file(path, n + 8192, 2);
  PoolConfig cfg;
  cfg.host_bytes = 64 << 20;
  const int gpus = cuda::device_count();
  for (int g = 0; g < gpus; ++g) cfg.devices.push_back({g, 64 << 20, "cuda"});
  MemoryPool pool(cfg, cuda::pool_deps());
  EXPECT_EQ(pool.status_json()["tiers"][0]["page_locked"], true);
  const BlobId b = pool.register_file_blob("w", path, 1000, n);
  std::vector<Completion> cs;
  for (int g = 0; g < gpus; ++g) cs.push_back(pool.request(b, pool.device_tier(g)));
  for (auto& c : cs) c.wait();
  EXPECT_EQ(pool.tier(pool.host_tier()).stats().bytes_moved_in, n);  // one disk read
  std::vector<std::uint8_t> back(n);
  for (int g = 0; g < gpus; ++g) {
    auto& dev = dynamic_cast<DeviceTier&>(pool.tier(pool.device_tier(g)));
    EXPECT_STREQ(dev.backend(), "cuda");
    PinnedCopy p = pool.pin(b, pool.device_tier(g));
    std::memset(back.data(), 0, n);
    dev.copy_out(static_cast<std::uint64_t>(p.data() - dev.base()), back.data(), n).wait();
    EXPECT_EQ(std::memcmp(back.data(), src.data() + 1000, n), 0) << "gpu " << g;
  }
}

// The same residency script on the CPU device tier and on the CUDA tier: identical
// decisions, bytes moved and contents.
TEST(CudaPool, ResidencyScriptParityWithTheCpuDeviceTier) {
  REQUIRE_GPU();
  testing::TempDir dir;
  const std::string path = dir.file("shard.bin");
  const std::uint64_t block = (1 << 20) + 3000;
  testing::write_random_file(path, 10 * block + 9000, 3);
  std::vector<std::size_t> order;
  for (int step = 0; step < 4; ++step)
    for (std::size_t i = 0; i < 10; ++i) order.push_back(step % 2 ? 9 - i : i);
  auto run = [&](bool use_cuda) {
    PoolConfig cfg;
    cfg.host_bytes = 8 << 20;  // smaller than the blobs: host LRU evictions happen too
    cfg.devices = {{0, 4 * block + 4096, use_cuda ? "cuda" : "cpu"}};
    MemoryPool pool(cfg, use_cuda ? cuda::pool_deps() : PoolDeps{});
    std::vector<BlobId> blobs;
    for (int i = 0; i < 10; ++i) blobs.push_back(pool.register_file_blob("b" + std::to_string(i), path, 50 + i * block, block));
    return testing::run_residency_script(pool, pool.device_tier(0), blobs, order, 2 * block);
  };
  const testing::ScriptResult cpu = run(false);
  const testing::ScriptResult gpu = run(true);
  EXPECT_EQ(cpu.decisions, gpu.decisions);
  EXPECT_EQ(cpu.checksums, gpu.checksums);
  EXPECT_EQ(cpu.device_bytes_in, gpu.device_bytes_in);
  EXPECT_EQ(cpu.device_bytes_out, gpu.device_bytes_out);
  EXPECT_EQ(cpu.host_bytes_in, gpu.host_bytes_in);
  EXPECT_EQ(cpu.host_bytes_out, gpu.host_bytes_out);
  EXPECT_EQ(cpu.peak_device_used, gpu.peak_device_used);
}

}  // namespace
}  // namespace wand::memory
