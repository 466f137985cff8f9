// ParallelDitRunner: one job's denoising steps on several cards of one process, one
// thread per card, with a ParallelStrategy (single, cfg-parallel, ulysses-N,
// cfg2xulysses-S) and the block weights streamed to every card from the ONE shared
// host copy (an exec::BlockStreamer per rank over its own device tier of the shared pool;
// rank 0's also plans the host tier when host_window_bytes > 0, Note [Per-card streaming]).
//
//   // the shared pool: host tier + one device tier per card (memory/cuda pool_deps() on GPUs)
//   WeightStore hi = WeightStore::open(ck_hi, pool, {...});          // per-block blobs, shared
//   std::vector<ParallelRank> ranks;
//   for (int g : {0, 1}) ranks.push_back({pool.device_tier(g), g, {&dit_hi[g]}});  // non-block weights on cuda:g
//   ParallelDitRunner run(pool, {&hi}, expert_of_step, ranks, choose_strategy(2, 40),
//                         nccl_group_factory());                     // or fake_group_factory()
//   for (k...) { auto [cond, uncond] = run.step(k, in);  x = sampler.step(cfg_combine(uncond, cond, g), x); }
//   nlohmann::json s = run.stats_json();                             // per rank: bytes in, waits
//
// step() starts one thread per rank (each sets its CUDA device), runs the strategy's
// forward of both CFG branches on every rank and returns rank 0's (cond, uncond)
// [out_dim, F, H, W] fp32 on rank 0's device; every rank computes the same values
// (the predictions are all-gathered), so the caller steps one sampler. Groups (CFG x
// Ulysses): rank q = b * S + s is in sequence group b at position s and in guidance group
// s at position b; make_group is called once per group from the constructor's thread
// (ncclCommInitAll must be). A rank that throws makes the others wait in a collective:
// FakeCollective times out (120 s); NCCL would hang, so inputs are checked up front.
//
// Owns the collectives and the per-rank streamers; borrows the pool, stores and
// DiTs. One controlling thread calls step() / stats_json().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "scheduler/exec/dit_executor.h"
#include "scheduler/multigpu/collective.h"
#include "scheduler/multigpu/parallel_strategy.h"
#include "scheduler/exec/block_streamer.h"

namespace wand::sched {

struct ParallelRank {
  int device_tier = -1;                    // this card's pool tier
  int cuda_device = -1;                    // -1: CPU (a CpuDeviceTier, a fake card)
  std::vector<const model::WanDit*> dits;  // per expert: non-block weights on this card
};

// Makes the collectives of one group; `cuda_devices` are the members' devices in rank
// order (-1 for CPU ranks).
using GroupFactory = std::function<std::vector<std::unique_ptr<Collective>>(const std::vector<int>& cuda_devices)>;
GroupFactory fake_group_factory();
#ifdef WAND_HAVE_NCCL
GroupFactory nccl_group_factory();
#endif

class ParallelDitRunner {
 public:
  // ranks.size() must equal strategy.ranks(); num_heads % seq_degree == 0. Throws
  // wand::Error(kConfig / kBadRequest) naming the numbers.
  ParallelDitRunner(memory::MemoryPool& pool, std::vector<const exec::WeightStore*> stores,
                    std::vector<int> expert_of_step, std::vector<ParallelRank> ranks, ParallelStrategy strategy,
                    const GroupFactory& make_group, std::uint64_t window_bytes = 0,
                    std::uint64_t host_window_bytes = 0);
  ~ParallelDitRunner();

  // Step k, both CFG branches: (cond, uncond) of rank 0, on rank 0's device; with in.uncond
  // false (guidance 1) the cond branch only: (cond, undefined) (Note [Guidance 1 in a group],
  // parallel_runner.cpp).
  std::pair<at::Tensor, at::Tensor> step(std::int64_t k, const exec::StepInputs& in,
                                         const CancelToken* cancel = nullptr);

  const ParallelStrategy& strategy() const { return strategy_; }
  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  const exec::BlockStreamer& streamer(int rank) const { return *streams_.at(static_cast<std::size_t>(rank)); }
  nlohmann::json stats_json() const;

 private:
  std::pair<at::Tensor, at::Tensor> run_rank(int q, std::int64_t k, const exec::StepInputs& in,
                                             const CancelToken* cancel);

  std::vector<ParallelRank> ranks_;
  std::vector<int> expert_of_step_;
  ParallelStrategy strategy_;
  std::vector<std::unique_ptr<Collective>> seq_;   // per rank: its sequence group (Ulysses kinds)
  std::vector<std::unique_ptr<Collective>> cfg_;   // per rank: its guidance group (cfg kinds)
  std::vector<std::unique_ptr<exec::BlockStreamer>> streams_;  // per rank
};

}  // namespace wand::sched
