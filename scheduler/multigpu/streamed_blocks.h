// StreamedBlocks: the per-card streaming block loop of the multi-GPU drivers. Each
// rank (one GPU, one thread) owns one StreamedBlocks over ITS device tier of the ONE
// shared MemoryPool; the weight stores (per-block blobs) are shared by every rank, so
// one pinned host copy of each block feeds every card (Note [Transfer chains] in
// memory/memory_pool.h).
//
//   // once: the shared pool (host tier + one device tier per card) and the stores
//   StreamedBlocks sb(pool, {&store_hi, &store_lo}, expert_of_step, {pool.device_tier(r), r});
//   // on rank r's thread, step k:
//   UlyssesDit u(dit_r, *group[r]);                       // dit_r: non-block weights on cuda:r
//   auto [cond, uncond] = u.forward_cfg(x, t, ctx, ctx_null, seq_len, c10::nullopt, sb.loop(k));
//
// Note [Per-card streaming]: the schedule of block uses (step k uses blocks 0..L-1 of
// expert_of_step[k]) is static, so a memory::ResidencyManager plans this card's device
// tier exactly as the single-GPU DitExecutor does: before block i it evicts what is used
// farthest ahead (Belady) and requests blocks i, i+1, ... until window_bytes are covered
// (host -> device copies of the shared host copy; a block not yet on the host is read
// from disk ONCE, whichever card asks first, the other cards' copies chain behind it);
// then it pins block i (the wait is counted), hands views of it to the body, records a
// compute fence and unpins the blocks the device has finished (on CUDA block i-1 at the
// latest, after block i is launched; on CPU at once). Blocks stay resident while the tier
// has room (a 24 GiB card keeps many A14B blocks across steps), so the device tier is
// never over its capacity (allocations are checked by the tier). On an exception the
// device is synchronised before pins drop.
//
// Owns its residency manager and counters; borrows the pool and the stores (they must
// outlive it). One thread (its rank's) calls run() / loop(); stats() from that thread
// or after it joined.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/dit_block_weights.h"

namespace wand::memory {
class MemoryPool;
class ResidencyManager;
}  // namespace wand::memory
namespace wand::model {
class WanDit;
}
namespace wand::sched {
class CancelToken;
namespace exec {
class WeightStore;
}

// The body of a block loop: block i of the forward with its weights.
using BlockBody = std::function<void(std::int64_t i, const model::DitBlockWeights& w)>;
// Runs body(i, w_i) for i = 0..L-1 in order (the weights valid during the call only).
using BlockLoop = std::function<void(const BlockBody& body)>;

// The loop over a DiT's own (owned, resident) block weights.
BlockLoop owned_block_loop(const model::WanDit& dit);

struct StreamedBlocksOptions {
  int device_tier = -1;             // this card's pool tier
  int cuda_device = -1;             // -1: CPU compute (a CpuDeviceTier)
  std::uint64_t window_bytes = 0;   // prefetch window; 0: the two largest blocks
};

struct StreamedBlocksStats {
  std::uint64_t steps = 0;
  std::uint64_t blocks_run = 0;
  std::uint64_t device_bytes_in = 0;     // host -> this card, bytes requested by this rank
  std::uint64_t peak_tier_used_bytes = 0;  // this card's tier, sampled after each block's plan
  double wait_s = 0;                      // compute waited for weights
  double max_block_wait_s = 0;
  double run_s = 0;                       // wall time inside run()
};

class StreamedBlocks {
 public:
  // stores: the experts' weight stores (shared by all ranks); expert_of_step[k] picks the
  // expert of step k. Throws wand::Error(kBadRequest) for inconsistent inputs.
  StreamedBlocks(memory::MemoryPool& pool, std::vector<const exec::WeightStore*> stores,
                 std::vector<int> expert_of_step, StreamedBlocksOptions options);
  ~StreamedBlocks();
  StreamedBlocks(const StreamedBlocks&) = delete;
  StreamedBlocks& operator=(const StreamedBlocks&) = delete;

  // One pass over the blocks of step k's expert (Note [Per-card streaming]). Checks the
  // cancel token between blocks (throws Error(kCancelled)).
  void run(std::int64_t k, const BlockBody& body, const CancelToken* cancel = nullptr);
  // run(k, ., cancel) as a BlockLoop for the drivers (borrows this object).
  BlockLoop loop(std::int64_t k, const CancelToken* cancel = nullptr);

  std::int64_t num_steps() const { return static_cast<std::int64_t>(expert_of_step_.size()); }
  std::uint64_t window_bytes() const { return window_; }
  int device_tier() const { return opt_.device_tier; }
  const StreamedBlocksStats& stats() const { return stats_; }
  nlohmann::json stats_json() const;

 private:
  void plan_and_apply(std::size_t position);

  memory::MemoryPool& pool_;
  std::vector<const exec::WeightStore*> stores_;
  std::vector<int> expert_of_step_;
  StreamedBlocksOptions opt_;
  std::int64_t layers_ = 0;
  std::uint64_t window_ = 0;
  std::unique_ptr<memory::ResidencyManager> rm_;
  StreamedBlocksStats stats_;
};

}  // namespace wand::sched
