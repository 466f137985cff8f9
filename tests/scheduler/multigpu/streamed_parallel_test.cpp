// Issue 7, part 2: weights streamed to every (fake) card from ONE shared host copy.
// Ulysses 2/3/4, CFG-parallel and CFG x Ulysses through ParallelDitRunner with
// exec::BlockStreamer over 1-4 CpuDeviceTiers of one MemoryPool and FakeCollective groups:
// latents after 2 UniPC steps equal the single-device WanDit::forward_cfg path (fp32,
// 1e-5 relative); the host tier holds exactly one copy of each block (each read from its
// file once, whatever the number of cards); every card's tier stays within its capacity
// while blocks are evicted and re-fetched (the tier holds 2 of the 5 blocks).
#include <gtest/gtest.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/checkpoint.h"
#include "model/sampler.h"
#include "model/sampler_schedule.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/multigpu/parallel_runner.h"
#include "scheduler/multigpu/parallel_strategy.h"
#include "tests/scheduler/multigpu/tiny_parallel_model.h"

namespace {

using namespace wand;
using sched::ParallelDitRunner;
using sched::ParallelKind;
using sched::ParallelStrategy;

constexpr double kRelTol = 1e-5;
constexpr double kGuide = 5.0;
constexpr int64_t kLayers = 5;
constexpr int kSteps = 2;

void expect_close(const at::Tensor& a, const at::Tensor& ref, const std::string& what) {
  ASSERT_EQ(a.sizes(), ref.sizes()) << what;
  const double scale = ref.abs().max().item<double>();
  const double err = (a.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>();
  ASSERT_GT(scale, 0.0) << what;
  EXPECT_LE(err, kRelTol * scale) << what << ": max abs error " << err << " vs max |ref| " << scale;
}

memory::PoolConfig pool_config(int cards, std::uint64_t tier_bytes, std::uint64_t host_bytes = 64ull << 20) {
  nlohmann::json devices = nlohmann::json::array();
  for (int g = 0; g < cards; ++g) devices.push_back({{"index", g}, {"bytes", tier_bytes}, {"backend", "cpu"}});
  nlohmann::json j = {{"host", {{"bytes", host_bytes}, {"pinned", false}}},
                      {"devices", devices},
                      {"io", {{"engine", "psync"}}}};
  return memory::PoolConfig::from_json(j);
}

sched::exec::StepInputs make_inputs() {
  at::manual_seed(3);
  sched::exec::StepInputs in;
  in.x = at::randn({16, 5, 10, 2});  // 25 tokens: divides by none of 2, 3, 4
  in.context = at::randn({7, test::kTinyTextDim});
  in.context_null = at::randn({5, test::kTinyTextDim});
  in.seq_len = 25;
  return in;
}

class StreamedParallel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ck_ = std::make_unique<model::CheckpointDir>(test::tiny_parallel_model_dir(kLayers));
    full_ = std::make_unique<model::WanDit>(model::WanDit::load(*ck_, model::RunDtype::kFloat32, at::kCPU, true));
    nonblock_ = std::make_unique<model::WanDit>(model::WanDit::load(*ck_, model::RunDtype::kFloat32, at::kCPU, false));
    // One block's copy on a CPU device tier, measured on a scratch pool.
    memory::MemoryPool scratch(pool_config(1, 32ull << 20));
    sched::exec::WeightStoreOptions o;
    o.run = model::RunDtype::kFloat32;
    o.name = "probe";
    auto s = sched::exec::WeightStore::open(*ck_, scratch, o);
    slot_bytes_ = 0;
    for (const auto& b : s.blocks()) slot_bytes_ = std::max(slot_bytes_, scratch.copy_bytes(b.id, scratch.device_tier(0)));
  }
  static void TearDownTestSuite() {
    nonblock_.reset();
    full_.reset();
    ck_.reset();
  }

  // Latents after kSteps UniPC steps with guidance, from a step function returning (cond, uncond).
  template <class StepFn>
  static at::Tensor latents(const sched::exec::StepInputs& in0, StepFn step) {
    model::FlowSampler s(model::SolverKind::kUniPC, kSteps, 5.0);
    sched::exec::StepInputs in = in0;
    in.x = in0.x.clone();
    int64_t k = 0;
    while (!s.done()) {
      in.t = at::full({1}, static_cast<double>(s.timestep()));
      auto [c, u] = step(k++, in);
      in.x = s.step(model::cfg_combine(u, c, kGuide), in.x);
    }
    return in.x;
  }

  static inline std::unique_ptr<model::CheckpointDir> ck_;
  static inline std::unique_ptr<model::WanDit> full_, nonblock_;
  static inline std::uint64_t slot_bytes_ = 0;
};

TEST_F(StreamedParallel, EveryStrategyMatchesTheSingleDevicePathWithOneHostCopy) {
  const sched::exec::StepInputs in = make_inputs();
  const at::Tensor ref = latents(in, [&](int64_t, const sched::exec::StepInputs& i) {
    return full_->forward_cfg(i.x, i.t, i.context, i.context_null, i.seq_len);
  });
  const std::vector<ParallelStrategy> strategies = {
      {ParallelKind::kSingle, 1},  {ParallelKind::kUlysses, 2},     {ParallelKind::kUlysses, 3},
      {ParallelKind::kUlysses, 4}, {ParallelKind::kCfgParallel, 1}, {ParallelKind::kCfgUlysses, 2}};
  for (const ParallelStrategy& st : strategies) {
    SCOPED_TRACE(st.name());
    const int cards = st.ranks();
    const std::uint64_t tier_bytes = 2 * slot_bytes_ + slot_bytes_ / 2;  // 2 of the 5 blocks fit
    memory::MemoryPool pool(pool_config(cards, tier_bytes));
    sched::exec::WeightStoreOptions o;
    o.run = model::RunDtype::kFloat32;
    o.name = "dit";
    sched::exec::WeightStore store = sched::exec::WeightStore::open(*ck_, pool, o);
    std::vector<sched::ParallelRank> ranks;
    for (int g = 0; g < cards; ++g) ranks.push_back({pool.device_tier(g), -1, {nonblock_.get()}});
    ParallelDitRunner run(pool, {&store}, std::vector<int>(kSteps, 0), ranks, st, sched::fake_group_factory(),
                          /*window_bytes=*/slot_bytes_);
    const at::Tensor out = latents(in, [&](int64_t k, const sched::exec::StepInputs& i) { return run.step(k, i); });
    expect_close(out, ref, st.name());

    // One host copy of each block, read from its file once for all cards and steps.
    std::uint64_t host_bytes = 0, blob_bytes = 0, device_in = 0;
    for (const auto& b : store.blocks()) {
      EXPECT_EQ(pool.state(b.id, pool.host_tier()), memory::CopyState::kReady) << b.blob_name;
      host_bytes += pool.copy_bytes(b.id, pool.host_tier());
      blob_bytes += b.bytes;
    }
    const memory::TierStats host = pool.tier(pool.host_tier()).stats();
    EXPECT_EQ(host.bytes_used, host_bytes) << "the host tier holds more than one copy of the blocks";
    // Each block read once (a read moves the blob plus at most its O_DIRECT head and tail).
    EXPECT_GE(host.bytes_moved_in, blob_bytes);
    EXPECT_LE(host.bytes_moved_in, host_bytes) << "a block was read from disk more than once";
    for (int g = 0; g < cards; ++g) {
      const sched::exec::BlockStreamerStats& s = run.streamer(g).stats();
      const memory::TierStats t = pool.tier(pool.device_tier(g)).stats();
      EXPECT_LE(s.peak_tier_used_bytes, tier_bytes) << "card " << g;
      EXPECT_LE(t.bytes_used, tier_bytes) << "card " << g;
      EXPECT_EQ(s.blocks_run, static_cast<std::uint64_t>(kSteps * kLayers)) << "card " << g;
      // Streamed for real: more bytes crossed to the card than the model has.
      EXPECT_GT(s.device_bytes_in, store.total_bytes()) << "card " << g;
      EXPECT_EQ(t.bytes_moved_in, s.device_bytes_in) << "card " << g;
      device_in += t.bytes_moved_in;
    }
    EXPECT_GE(host.bytes_moved_out, device_in) << "every card's copy came from the host copy";
  }
}

// Issue 16: the one streamer plans the host tier for groups too. Two experts (two stores
// over the tiny model's files) whose 10 blocks do not fit a host tier of 6: rank 0's
// streamer reads the idle expert ahead of the switch and evicts the finished one; every
// step still equals the owned forward, and the host tier never holds more than its size.
TEST_F(StreamedParallel, GroupsPlanTheHostTierAcrossTheExpertSwitch) {
  for (const ParallelStrategy& st : {ParallelStrategy{ParallelKind::kCfgParallel, 1},
                                     ParallelStrategy{ParallelKind::kUlysses, 2}}) {
    SCOPED_TRACE(st.name());
    std::uint64_t host_slot = 0;
    {
      memory::MemoryPool scratch(pool_config(1, 32ull << 20));
      sched::exec::WeightStoreOptions o;
      o.run = model::RunDtype::kFloat32;
      o.name = "probe";
      auto s = sched::exec::WeightStore::open(*ck_, scratch, o);
      for (const auto& b : s.blocks()) host_slot = std::max(host_slot, scratch.copy_bytes(b.id, scratch.host_tier()));
    }
    const std::uint64_t tier_bytes = 2 * slot_bytes_ + slot_bytes_ / 2;
    memory::MemoryPool pool(pool_config(st.ranks(), tier_bytes, 6 * host_slot));
    sched::exec::WeightStoreOptions o;
    o.run = model::RunDtype::kFloat32;
    o.name = "hi";
    sched::exec::WeightStore hi = sched::exec::WeightStore::open(*ck_, pool, o);
    o.name = "lo";
    sched::exec::WeightStore lo = sched::exec::WeightStore::open(*ck_, pool, o);
    std::vector<sched::ParallelRank> ranks;
    for (int g = 0; g < st.ranks(); ++g) {
      ranks.push_back({pool.device_tier(g), -1, {nonblock_.get(), nonblock_.get()}});
    }
    const std::vector<int> expert_of_step = {0, 0, 1, 1};
    ParallelDitRunner run(pool, {&hi, &lo}, expert_of_step, ranks, st, sched::fake_group_factory(),
                          /*window_bytes=*/slot_bytes_, /*host_window_bytes=*/4 * host_slot);
    ASSERT_TRUE(run.streamer(0).host_planning());
    for (int g = 1; g < st.ranks(); ++g) EXPECT_FALSE(run.streamer(g).host_planning()) << "rank " << g;
    sched::exec::StepInputs in = make_inputs();
    for (int64_t k = 0; k < 4; ++k) {
      in.t = at::full({1}, 900.0 - 100.0 * static_cast<double>(k));
      auto [c, u] = run.step(k, in);
      auto [rc, ru] = full_->forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len);
      expect_close(c, rc, st.name() + " cond");
      expect_close(u, ru, st.name() + " uncond");
      EXPECT_LE(pool.tier(pool.host_tier()).stats().bytes_used, 6 * host_slot);
      if (k == 1) {  // the host window reached across the switch: lo's block 1 is coming
        EXPECT_NE(pool.state(lo.block(1).id, pool.host_tier()), memory::CopyState::kAbsent);
      }
    }
    // Both experts were read; the host tier held at most 6 of the 10 blocks at any time.
    EXPECT_GE(run.streamer(0).stats().host_bytes_in, 10 * host_slot - host_slot);
    EXPECT_EQ(run.stats_json()["ranks"][0]["host_planning"].get<bool>(), true);
  }
}

TEST_F(StreamedParallel, StrategyChoiceNamesAndErrors) {
  EXPECT_EQ(sched::choose_strategy(1, 40).name(), "single");
  EXPECT_EQ(sched::choose_strategy(2, 40).name(), "cfg-parallel");
  EXPECT_EQ(sched::choose_strategy(3, 40).name(), "cfg-parallel");  // 40 % 3 != 0
  EXPECT_EQ(sched::choose_strategy(4, 40).name(), "cfg2xulysses-2");
  EXPECT_EQ(sched::choose_strategy(5, 40).name(), "ulysses-5");
  EXPECT_EQ(sched::choose_strategy(8, 40).name(), "cfg2xulysses-4");
  std::vector<std::string> names;
  for (const auto& s : sched::strategies_for(4, 12)) names.push_back(s.name());
  EXPECT_EQ(names, (std::vector<std::string>{"ulysses-4", "cfg2xulysses-2"}));
  for (const char* n : {"single", "cfg-parallel", "ulysses-3", "cfg2xulysses-4"}) {
    EXPECT_EQ(sched::parse_strategy(n).name(), n);
  }
  EXPECT_THROW(sched::parse_strategy("ulysses-x"), Error);
  EXPECT_THROW(sched::parse_strategy("pipeline"), Error);

  memory::MemoryPool pool(pool_config(2, 2 * slot_bytes_ + slot_bytes_ / 2));
  sched::exec::WeightStoreOptions o;
  o.run = model::RunDtype::kFloat32;
  sched::exec::WeightStore store = sched::exec::WeightStore::open(*ck_, pool, o);
  std::vector<sched::ParallelRank> ranks = {{pool.device_tier(0), -1, {nonblock_.get()}},
                                            {pool.device_tier(1), -1, {nonblock_.get()}}};
  try {  // 2 cards for a 4-card strategy
    ParallelDitRunner r(pool, {&store}, {0}, ranks, {ParallelKind::kUlysses, 4}, sched::fake_group_factory());
    FAIL() << "accepted 2 cards for ulysses-4";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("needs 4 cards, got 2"), std::string::npos) << e.what();
  }
  try {  // the default window (2 blocks) + the block being released does not fit 2.5 blocks
    sched::exec::BlockStreamerOptions so;
    so.device_tier = pool.device_tier(0);
    sched::exec::BlockStreamer sb(pool, {&store}, {0}, so);
    FAIL() << "accepted a tier smaller than window + one block";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("cannot hold the prefetch window"), std::string::npos) << e.what();
  }
}

}  // namespace
