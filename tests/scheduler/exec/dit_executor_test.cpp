// DitExecutor on tiny experts with a CPU device tier that holds only 3 blocks: the
// streamed CFG step equals WanDit::forward_cfg with owned weights bit for bit, across
// steps and the expert switch; cancellation; budget refusal.
#include "scheduler/exec/dit_executor.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "scheduler/cancel_token.h"
#include "scheduler/exec/weight_store.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::exec {
namespace {

namespace fs = std::filesystem;
using model::CheckpointDir;
using model::RunDtype;
using model::WanDit;
using test::TempDir;

StepInputs tiny_step_inputs(const model::WanConfig& cfg, int seed) {
  at::manual_seed(seed);
  StepInputs in;
  in.x = at::randn({cfg.out_dim, 3, 8, 10});
  in.t = at::full({1}, 900 - 37 * seed, at::kLong);
  in.context = at::randn({7, cfg.text_dim}) * 0.5;
  in.context_null = at::randn({5, cfg.text_dim}) * 0.5;
  in.seq_len = 3 * 4 * 5;
  return in;
}

std::uint64_t round4k(std::uint64_t v) { return (v + 4095) / 4096 * 4096; }

// Two experts (high / low noise), their owned reference DiTs and streamed DiTs.
struct TwoExperts {
  TempDir tmp;
  std::unique_ptr<CheckpointDir> ck[2];
  std::unique_ptr<WanDit> owned[2], streamed[2];

  explicit TwoExperts(at::ScalarType stored) {
    for (int e = 0; e < 2; ++e) {
      const fs::path d = test::write_expert(tmp.path() / (e == 0 ? "high_noise_model" : "low_noise_model"), stored,
                                            21 + e);
      ck[e] = std::make_unique<CheckpointDir>(d);
      owned[e] = std::make_unique<WanDit>(WanDit::load(*ck[e], RunDtype::kBFloat16, at::kCPU, true));
      streamed[e] = std::make_unique<WanDit>(WanDit::load(*ck[e], RunDtype::kBFloat16, at::kCPU, false));
    }
  }
  std::string spool() const { return (tmp.path() / "spool").string(); }
};

// Block blob bytes of a tiny expert, measured from a store on a scratch pool.
std::uint64_t tiny_block_bytes(const CheckpointDir& ck, const std::string& spool) {
  memory::MemoryPool scratch(test::tiny_pool_config(8ull << 20, 8ull << 20));
  WeightStoreOptions o;
  o.pack_dir = spool;
  o.name = "probe";
  return WeightStore::open(ck, scratch, o).max_block_bytes();
}

void run_streamed_job(at::ScalarType stored, std::uint64_t host_blocks, std::uint64_t host_window_blocks) {
  TwoExperts m(stored);
  const std::uint64_t block = tiny_block_bytes(*m.ck[0], m.spool());
  // Copies on the CPU device tier take the 4 KiB-rounded range plus the O_DIRECT head.
  const std::uint64_t slot = round4k(block) + 4096;
  memory::MemoryPool pool(test::tiny_pool_config(host_blocks * slot, 3 * slot));
  WeightStoreOptions o;
  o.pack_dir = m.spool();
  o.name = "hi";
  WeightStore hi = WeightStore::open(*m.ck[0], pool, o);
  o.name = "lo";
  WeightStore lo = WeightStore::open(*m.ck[1], pool, o);
  ASSERT_EQ(hi.direct(), stored == at::kBFloat16);

  const int dev = pool.device_tier(0);
  ExecutorOptions eo;
  eo.device_tier = dev;
  eo.window_bytes = 2 * pool.copy_bytes(hi.block(0).id, dev);
  eo.host_window_bytes = host_window_blocks * pool.copy_bytes(hi.block(0).id, pool.host_tier());
  const std::vector<int> expert_of_step = {0, 0, 1, 1};  // the MoE switch after step 2
  DitExecutor exec(pool, {{m.streamed[0].get(), &hi}, {m.streamed[1].get(), &lo}}, expert_of_step, eo);

  const std::int64_t layers = m.ck[0]->config().num_layers;
  std::uint64_t dev_min = UINT64_MAX, dev_max = 0, host_all = 0;
  for (const WeightStore* ws : {&hi, &lo}) {
    for (const BlockBlob& b : ws->blocks()) {
      dev_min = std::min(dev_min, pool.copy_bytes(b.id, dev));
      dev_max = std::max(dev_max, pool.copy_bytes(b.id, dev));
      host_all += pool.copy_bytes(b.id, pool.host_tier());
    }
  }
  for (std::int64_t k = 0; k < exec.num_steps(); ++k) {
    const StepInputs in = tiny_step_inputs(m.ck[0]->config(), static_cast<int>(k) + 1);
    const int e = expert_of_step[static_cast<std::size_t>(k)];
    auto [c, u] = exec.step(k, in);
    auto [rc, ru] = m.owned[e]->forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len);
    EXPECT_TRUE(at::equal(c, rc)) << "step " << k << " cond";
    EXPECT_TRUE(at::equal(u, ru)) << "step " << k << " uncond";
    // Never more than the tier's 3 slots, nothing left pinned between steps.
    std::uint64_t resident = 0;
    for (const auto& r : pool.resident(dev)) {
      resident += r.bytes;
      EXPECT_EQ(r.pins, 0u);
    }
    EXPECT_LE(resident, pool.tier(dev).bytes_capacity());
    if (k == 1 && host_window_blocks > 1) {
      // The last high-noise step ended with the low-noise expert's second block already
      // on its way into host memory (the host window reaches across the switch; the device window of 2 blocks does not reach it).
      EXPECT_NE(pool.state(lo.block(1).id, pool.host_tier()), memory::CopyState::kAbsent);
    }
  }
  const ExecutorStats& s = exec.stats();
  EXPECT_EQ(s.steps, 4u);
  EXPECT_EQ(s.blocks_run, static_cast<std::uint64_t>(4 * layers));
  EXPECT_EQ(s.block_wait_s.size(), static_cast<std::size_t>(4 * layers));
  // 3 slots for 6 blocks: every use but the few still resident from the previous step
  // crosses to the device; at least one expert's worth per step.
  EXPECT_GE(s.device_bytes_in, static_cast<std::uint64_t>(4 * (layers - 3)) * dev_min);
  EXPECT_LE(s.device_bytes_in, static_cast<std::uint64_t>(4 * layers) * dev_max);
  // Both experts' blocks were read from their files at least once.
  EXPECT_GE(s.host_bytes_in, host_all);
  const nlohmann::json j = exec.stats_json();
  EXPECT_EQ(j.at("blocks_run").get<std::uint64_t>(), s.blocks_run);
}

TEST(DitExecutor, StreamedStepsEqualForwardCfgDirectBf16) { run_streamed_job(at::kBFloat16, 64, 0); }

TEST(DitExecutor, StreamedStepsEqualForwardCfgPackedFromFp32) { run_streamed_job(at::kFloat, 64, 0); }

// Host tier smaller than both experts (8 blocks of 12): the idle expert is read from disk
// ahead of the switch while the host evicts the finished one.
TEST(DitExecutor, HostTierSmallerThanBothExperts) { run_streamed_job(at::kBFloat16, 8, 4); }

TEST(DitExecutor, CancelBetweenBlocksLeavesNothingPinned) {
  TwoExperts m(at::kBFloat16);
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 2ull << 20));
  WeightStoreOptions o;
  o.name = "hi";
  WeightStore hi = WeightStore::open(*m.ck[0], pool, o);
  ExecutorOptions eo;
  eo.device_tier = pool.device_tier(0);
  DitExecutor exec(pool, {{m.streamed[0].get(), &hi}}, {0, 0}, eo);
  CancelToken cancel;
  cancel.request(CancelToken::Reason::kCancel);
  const StepInputs in = tiny_step_inputs(m.ck[0]->config(), 1);
  try {
    exec.step(0, in, &cancel);
    FAIL() << "expected cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  for (const auto& r : pool.resident(pool.device_tier(0))) EXPECT_EQ(r.pins, 0u);
  EXPECT_EQ(exec.stats().blocks_run, 0u);
  // Not cancelled: runs.
  CancelToken fine;
  auto [c, u] = exec.step(1, in, &fine);
  auto [rc, ru] = m.owned[0]->forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len);
  EXPECT_TRUE(at::equal(c, rc));
  EXPECT_TRUE(at::equal(u, ru));
}

TEST(DitExecutor, BudgetThatCannotHoldTheWindowIsRefused) {
  TwoExperts m(at::kBFloat16);
  const std::uint64_t block = tiny_block_bytes(*m.ck[0], m.spool());
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 2 * (round4k(block) + 4096)));
  WeightStoreOptions o;
  o.name = "hi";
  WeightStore hi = WeightStore::open(*m.ck[0], pool, o);
  ExecutorOptions eo;
  eo.device_tier = pool.device_tier(0);
  eo.window_bytes = 2 * pool.copy_bytes(hi.block(0).id, eo.device_tier);  // + 1 block released = 3 > 2
  try {
    DitExecutor exec(pool, {{m.streamed[0].get(), &hi}}, {0}, eo);
    FAIL() << "expected the budget to be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("prefetch window"), std::string::npos) << e.what();
  }
  // The whole-card budget: context + slots + activation cap over the budget.
  eo.window_bytes = pool.copy_bytes(hi.block(0).id, eo.device_tier);
  eo.budget.budget_bytes = 1ull << 20;
  eo.budget.activation_bytes = 1ull << 20;
  try {
    DitExecutor exec(pool, {{m.streamed[0].get(), &hi}}, {0}, eo);
    FAIL() << "expected the budget to be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("activation cap"), std::string::npos) << e.what();
  }
}

TEST(DitExecutor, DeviceMismatchIsRefused) {
  TwoExperts m(at::kBFloat16);
  memory::MemoryPool pool(test::tiny_pool_config(16ull << 20, 2ull << 20));
  WeightStoreOptions o;
  o.name = "hi";
  WeightStore hi = WeightStore::open(*m.ck[0], pool, o);
  ExecutorOptions eo;
  eo.device_tier = pool.device_tier(0);
  eo.cuda_device = 0;  // a CPU DiT and a CPU device tier, told to run on cuda:0
  try {
    DitExecutor exec(pool, {{m.streamed[0].get(), &hi}}, {0}, eo);
    FAIL() << "expected a device mismatch";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadRequest);
    EXPECT_NE(std::string(e.what()).find("runs on cpu"), std::string::npos) << e.what();
  }
  eo.cuda_device = -1;
  eo.device_tier = 99;
  EXPECT_THROW(DitExecutor(pool, {{m.streamed[0].get(), &hi}}, {0}, eo), Error);
  eo.device_tier = pool.device_tier(0);
  EXPECT_THROW(DitExecutor(pool, {{m.streamed[0].get(), &hi}}, {0, 2}, eo), Error);  // no expert 2
}

TEST(ExecBudget, ActivationEstimateGrowsWithTokensAndChunkingBoundsTheFfn) {
  DitGeometry g;
  g.tokens = 32760;
  g.dim = 5120;
  g.ffn_dim = 13824;
  const std::uint64_t whole = dit_activation_bytes(g);
  g.chunk_tokens = 4096;
  const std::uint64_t chunked = dit_activation_bytes(g);
  EXPECT_LT(chunked, whole);
  g.tokens = 75600;
  EXPECT_GT(dit_activation_bytes(g), chunked);
  // The two fp32 residual streams alone: 2 x S x D x 4 bytes.
  EXPECT_GT(chunked, 2ull * 32760 * 5120 * 4);
}

}  // namespace
}  // namespace wand::sched::exec
