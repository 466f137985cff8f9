// GroupDit: the DiT experts of one Wan2.2 model run over several cards for ONE job (issue
// 7: cfg-parallel, ulysses-N, cfg2xulysses-S), as the CFG-forward hook of
// model::WanGenerator. The group counterpart of exec::StreamedDit: built once per
// pipeline, one ParallelDitRunner (scheduler/multigpu/parallel_runner.h) per job.
//
//   GroupDitOptions o;
//   o.ranks = {{pool.device_tier(0), 0, budget0}, {pool.device_tier(1), 1, budget1}};
//   o.strategy = "cfg-parallel";  o.run = RunDtype::kBFloat16;  o.pack_dir = "/var/lib/wand/spool";
//   o.stores = cache.get();                                      // shared host copy (store_cache.h)
//   GroupDit gd(pool, {dir / "high_noise_model", dir / "low_noise_model"}, o);
//   GeneratorOptions g;  g.device = at::Device(at::kCUDA, 0);  g.cfg_forward = gd.cfg_forward();
//   WanGenerator gen(dir, g);                                    // rank 0's card runs the sampler
//   GenState st = gen.prepare(req);
//   gd.begin_job(gen.expert_of_step(st), {0, st.seq_len});      // builds the runner
//   while (st.completed_steps() < st.total_steps()) gen.step(st, check);
//   gd.end_job();
//
// Per rank it owns the non-block weights of every expert on that rank's card
// (WanDit::load(..., load_blocks=false)); the block weights come from ONE set of weight
// stores for all ranks (from opt.stores when set, so also shared with the single-card
// pipelines of the model; else opened here). The constructor checks the group up front
// (a runner's collective would hang on a rank that throws): the strategy's name, its rank
// count against ranks.size(), num_heads % the Ulysses degree, every tier a distinct device
// tier of the pool; each refusal is Error(kConfig) naming the numbers. The collectives are
// NCCL when every rank is a CUDA card and the build has NCCL, else FakeCollective (CPU
// device tiers in tests).
//
// Note [Group budget]: per rank as Note [Streamed budget] (streamed_dit.h) with the rank's
// share of the work: the weight slots (its DeviceBudget::slot_bytes, 0: its tier's
// capacity) must hold two blocks; with budget_bytes > 0 the activation room is budget -
// context - slots - non-block weights, and the rank's token chunk is chosen for its share
// of the sequence: ceil(seq_len / S) tokens (S the Ulysses degree; attention runs on all
// tokens for heads / S heads, which the estimate does not count separately) and ONE
// residual stream when the strategy splits the CFG branches (cfg-parallel, cfg2xulysses:
// estimated as the single-card estimate with the uncond stream spilled), else both. The
// chunk is set on the rank's own DiTs (WanDit::set_chunk_tokens applies inside
// dit.block(), which every driver calls). There is no branch spill here. The prefetch
// window is the smallest over the ranks (the runner takes one).
//
// Note [Group cancel]: a rank that stops inside a step leaves the others waiting in a
// collective (NCCL would hang), so the job's cancel check runs on the controlling thread
// before and after each step, not between blocks: a cancel takes effect at the next step
// boundary.
//
// Host tier: with host_window_bytes > 0 rank 0's streamer plans the host tier over the job
// (the idle expert read from disk ahead of the switch, the finished one evicted; the other
// ranks chain behind its reads, Note [Per-card streaming] in scheduler/exec/block_streamer.h)
// when the job may (a job on shared stores plans only when it runs alone on them, Note
// [Shared stores and host planning]); else a block read into host memory stays there.
//
// Threads: construction, begin_job / end_job, the hook and stats_json on the job's thread,
// one job at a time (the runner starts one thread per rank inside each step). Borrows the
// pool (and opt.stores): they must outlive this object.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/dit_block_weights.h"  // RunDtype
#include "model/pipeline.h"           // CfgForwardFn
#include "scheduler/exec/exec_budget.h"
#include "scheduler/exec/store_cache.h"
#include "scheduler/exec/streamed_dit.h"  // StreamedJob
#include "scheduler/multigpu/parallel_strategy.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class WanDit;
}

namespace wand::sched {

class ParallelDitRunner;

struct GroupDitRank {
  int device_tier = -1;       // this card's pool tier
  int cuda_device = -1;       // -1: CPU (a CpuDeviceTier, a fake card)
  exec::DeviceBudget budget;  // see Note [Group budget]
};

struct GroupDitOptions {
  std::vector<GroupDitRank> ranks;        // in rank order
  std::string strategy;                   // "cfg-parallel", "ulysses-N", "cfg2xulysses-S"
  model::RunDtype run = model::RunDtype::kFloat32;
  std::string pack_dir;                   // where repacked blocks live (needed when a repack is)
  std::string name = "group";             // logs; the blob prefix of own stores ("<name>.hi")
  std::uint64_t window_bytes = 0;         // per-card prefetch window; 0: from the slots
  std::uint64_t host_window_bytes = 0;    // > 0: rank 0 plans the host tier with this window
  std::int64_t chunk_tokens = -1;         // -1: per rank from its budget; 0: never; > 0: this chunk
  exec::StoreCache* stores = nullptr;     // shared stores (null: opened here)
};

class GroupDit {
 public:
  // expert_dirs: one (ti2v) or two (A14B: high noise, low noise). Loads every rank's
  // non-block weights and opens (or shares) the stores. Throws Error(kConfig) for a bad
  // group (see above), kIo / kModelFormat for unreadable checkpoints.
  GroupDit(memory::MemoryPool& pool, const std::vector<std::filesystem::path>& expert_dirs, GroupDitOptions options);
  ~GroupDit();
  GroupDit(const GroupDit&) = delete;
  GroupDit& operator=(const GroupDit&) = delete;

  // Builds the job's runner over expert_of_step (expert of generator step first_step + j).
  // Throws Error(kConfig) naming the sizes when a rank's budget cannot run it.
  void begin_job(std::vector<int> expert_of_step, exec::StreamedJob job = {});
  void end_job();
  bool in_job() const { return runner_ != nullptr; }

  // The hook for GeneratorOptions::cfg_forward (Note [Group cancel]). Calls outside
  // begin_job() / end_job() throw Error(kInternal).
  model::CfgForwardFn cfg_forward();

  const ParallelStrategy& strategy() const { return strategy_; }
  int num_ranks() const { return static_cast<int>(opt_.ranks.size()); }
  std::size_t num_experts() const { return stores_.size(); }
  const exec::WeightStore& store(std::size_t expert) const { return *stores_.at(expert); }
  std::int64_t chunk_tokens(int rank) const { return chunks_.at(static_cast<std::size_t>(rank)); }
  // The runner's stats_json() of the current / last job, plus stores, chunks and totals.
  nlohmann::json stats_json() const;

 private:
  std::pair<at::Tensor, at::Tensor> forward(const model::StepForwardInputs& in, const model::CancelCheck& check);
  std::uint64_t max_block_bytes(int tier) const;

  memory::MemoryPool& pool_;
  GroupDitOptions opt_;
  ParallelStrategy strategy_;
  std::vector<std::vector<std::unique_ptr<model::WanDit>>> dits_;  // [rank][expert]
  std::vector<std::shared_ptr<exec::WeightStore>> stores_;         // per expert, all ranks
  std::uint64_t nonblock_bytes_ = 0;
  std::vector<std::int64_t> chunks_;     // per rank, of the current / last job
  std::vector<bool> capped_;             // per rank: LibTorch's allocator capped (CUDA)
  exec::StoreCache::JobLease lease_;
  std::int64_t first_step_ = 0;
  std::vector<int> expert_of_step_;
  std::unique_ptr<ParallelDitRunner> runner_;

  nlohmann::json last_job_;
  std::uint64_t jobs_ = 0;
  std::uint64_t total_steps_ = 0;           // finished jobs
  std::uint64_t total_device_bytes_in_ = 0;
  std::uint64_t total_host_bytes_in_ = 0;
  bool host_planning_ = false;              // of the current / last job
};

}  // namespace wand::sched
