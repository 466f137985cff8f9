// BlockStreamer: the ONE per-card loop that streams a job's DiT blocks from the memory pool
// through one device tier. Every driver takes its blocks from it: the single-card executor
// (DitExecutor) and each rank of a multi-GPU job (ParallelDitRunner, one streamer per card
// over ITS device tier of the one shared pool; the weight stores are shared, so one host
// copy of each block feeds every card, Note [Transfer chains] in memory/memory_pool.h).
//
//   BlockStreamerOptions o;  o.device_tier = pool.device_tier(0);  o.cuda_device = 0;
//   o.host_window_bytes = 2_GiB;                                  // 0: no host planning
//   BlockStreamer s(pool, {&store_hi, &store_lo}, expert_of_step, o);   // checks the slots
//   auto [cond, uncond] = dit.forward_cfg(x, t, ctx, ctx_null, seq_len, y, s.loop(k, check));
//
// Note [Per-card streaming]: the schedule of block uses (step k uses blocks 0..L-1 of
// expert_of_step[k]) is static, so a memory::ResidencyManager over the whole job plans the
// device tier: before block i it evicts what is used farthest ahead (Belady) and requests
// blocks i, i+1, ... until window_bytes are covered (host -> device copies of the shared
// host copy; a block not yet on the host is read from disk ONCE, whichever card asks
// first, the other cards' copies chain behind it). With host_window_bytes > 0 a second
// manager plans the host tier over the same schedule (the idle expert is read from disk
// ahead of the switch while the finished expert's blocks are evicted one by one); in a
// group only one rank plans the host tier (the others follow the same schedule and chain
// behind its reads). Then it pins block i (the time spent waiting is the block's wait),
// hands views of it to the body (at::from_blob, no copy), records a compute fence and
// unpins the blocks the device has finished (on CUDA block i-1 at the latest, after block
// i is launched, so while block i+1 is planned only block i stays pinned: the budget's
// "window + one block"; on CPU at once). Blocks stay resident while the tier has room (a
// 24 GiB card keeps many A14B blocks across steps); the device tier is never over its
// capacity (allocations are checked by the tier). The check runs between blocks (it
// throws to stop: a job's cancel); on an exception the device is synchronised before the
// pins drop.
//
// Owns its residency managers and counters; borrows the pool and the stores (they must
// outlive it). One thread (its card's) calls run() / loop(); stats() from that thread or
// after it joined.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/dit.h"  // BlockLoop, BlockBody
#include "scheduler/exec/exec_budget.h"

namespace wand::memory {
class MemoryPool;
class ResidencyManager;
}  // namespace wand::memory

namespace wand::sched::exec {

class WeightStore;

struct BlockStreamerOptions {
  int device_tier = -1;                 // this card's pool tier
  int cuda_device = -1;                 // -1: CPU compute (a CpuDeviceTier)
  std::uint64_t window_bytes = 0;       // device prefetch window; 0: the two largest blocks
  std::uint64_t host_window_bytes = 0;  // host prefetch window (disk -> host); 0: no host planning
  // Note [Device budget] (exec_budget.h): slot_bytes 0 means the device tier's capacity;
  // activation_need_bytes 0 skips the activation check.
  DeviceBudget budget;
  std::uint64_t activation_need_bytes = 0;
};

struct BlockStreamerStats {
  std::uint64_t steps = 0;                 // run() calls completed
  std::uint64_t blocks_run = 0;            // block uses (one per block per step)
  std::uint64_t device_bytes_in = 0;       // host -> device bytes this streamer requested
  std::uint64_t host_bytes_in = 0;         // disk -> host bytes this streamer requested
  std::uint64_t peak_tier_used_bytes = 0;  // this card's tier, sampled after each block's plan
  double wait_s = 0;                       // compute waited for weights
  double max_block_wait_s = 0;
  std::vector<double> block_wait_s;        // per block use, in schedule order
  double run_s = 0;                        // wall time inside run()
};

class BlockStreamer {
 public:
  // stores: the experts' weight stores (shared by all cards); expert_of_step[k] picks the
  // expert of step k. Throws Error(kBadRequest) for inconsistent inputs, Error(kConfig)
  // naming the numbers when the slots (or the budget) cannot hold the window.
  BlockStreamer(memory::MemoryPool& pool, std::vector<const WeightStore*> stores, std::vector<int> expert_of_step,
                BlockStreamerOptions options);
  ~BlockStreamer();
  BlockStreamer(const BlockStreamer&) = delete;
  BlockStreamer& operator=(const BlockStreamer&) = delete;

  // One pass over the blocks of step k's expert (Note [Per-card streaming]); `check`
  // (may be empty) runs before each block.
  void run(std::int64_t k, const model::BlockBody& body, const std::function<void()>& check = {});
  // run(k, ., check) as a model::BlockLoop (borrows this object and `check`'s captures).
  model::BlockLoop loop(std::int64_t k, std::function<void()> check = {});

  std::int64_t num_steps() const { return static_cast<std::int64_t>(expert_of_step_.size()); }
  int expert_of_step(std::int64_t k) const { return expert_of_step_.at(static_cast<std::size_t>(k)); }
  std::uint64_t window_bytes() const { return window_; }
  int device_tier() const { return opt_.device_tier; }
  bool host_planning() const { return host_rm_ != nullptr; }
  const BlockStreamerStats& stats() const { return stats_; }
  nlohmann::json stats_json() const;

 private:
  void plan_and_apply(std::size_t position);

  memory::MemoryPool& pool_;
  std::vector<const WeightStore*> stores_;
  std::vector<int> expert_of_step_;
  BlockStreamerOptions opt_;
  std::int64_t layers_ = 0;
  std::uint64_t window_ = 0;
  std::unique_ptr<memory::ResidencyManager> device_rm_;
  std::unique_ptr<memory::ResidencyManager> host_rm_;
  BlockStreamerStats stats_;
};

}  // namespace wand::sched::exec
