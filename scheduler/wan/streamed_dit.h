// StreamedDit: the DiT experts of one Wan2.2 model served from the memory pool on one card or
// on several (one job over N cards: cfg-parallel, ulysses-N, cfg2xulysses-S), as the
// CFG-forward hook of model::WanGenerator (GeneratorOptions::cfg_forward). One card is the
// `single` strategy. Built once per model (per card group) and reused across jobs; one
// executor per job: exec::DitExecutor on one card, ParallelDitRunner on several (both take
// their blocks from one exec::BlockStreamer per card, Note [Per-card streaming]).
//
//   StreamedDitOptions o;
//   o.ranks = {{pool.device_tier(0), /*cuda=*/0, budget0}};        // one card; more: a group
//   o.strategy = "single";                                         // "cfg-parallel", "ulysses-2", ...
//   o.run = RunDtype::kBFloat16;  o.pack_dir = "/var/lib/wand/spool";  o.name = "t2v";
//   o.stores = cache.get();                                        // shared host copy (store_cache.h)
//   StreamedDit sd(pool, {dir / "high_noise_model", dir / "low_noise_model"}, o);
//   GeneratorOptions g;  g.cfg_forward = sd.cfg_forward();         // WanGenerator never loads blocks
//   WanGenerator gen(dir, g);                                      // rank 0's card runs the sampler
//   GenState st = gen.prepare(req);
//   sd.begin_job(gen.expert_of_step(st), {0, st.seq_len});         // checks the budget, picks the chunk
//   while (st.completed_steps() < st.total_steps()) gen.step(st, check);
//   sd.end_job();
//   nlohmann::json s = sd.stats_json();
//
// Per rank it owns the non-block weights of every expert on that rank's card
// (WanDit::load(..., load_blocks=false)); the block weights come from ONE set of weight
// stores for all ranks (from opt.stores when set, so also shared with the other pipelines of
// the model, Note [Shared weight stores]; else opened here: direct over the release shards
// or packed once into pack_dir). begin_job() builds the job's executor over the schedule of
// the steps still to run (a resumed job passes first_step = the resumed step); the hook maps
// the generator's step index k to k - first_step and checks that the generator's expert
// (StepForwardInputs::high_noise) is the one the schedule planned.
//
// The constructor checks the group up front (a collective would hang on a rank that throws):
// the strategy's name, its rank count against ranks.size(), num_heads % the Ulysses degree,
// every tier a distinct device tier of the pool; each refusal is Error(kConfig) naming the
// numbers. The collectives are NCCL when every rank is a CUDA card and the build has NCCL,
// else FakeCollective (CPU device tiers in tests).
//
// Note [Streamed budget]: what a card holds is context + weight slots + non-block weights +
// activations. The slots are the card's device tier (DeviceBudget::slot_bytes, 0: the tier's
// capacity); they must hold two blocks (the block running and the next one; the prefetch
// window is two blocks when the slots hold three, else one; a group takes the smallest over
// its ranks). With budget_bytes > 0 the activation room is budget - context - slots -
// non-block weights (activation_bytes overrides it when set); the chunk
// (WanDit::set_chunk_tokens) is the largest token chunk whose dit_activation_bytes estimate
// fits that room, 0 (no chunking) when the whole sequence fits (exec::plan_card_job). A rank
// plans for its share of the work: ceil(seq_len / S) tokens (S the Ulysses degree) and ONE
// residual stream when the strategy splits the CFG branches (cfg-parallel, cfg2xulysses).
// On one card, when no chunk fits with both CFG branches' fp32 streams on the device, the
// uncond stream is spilled to a host blob between blocks (spill_uncond = -1, Note [Branch
// spill]) and the chunk chosen again; groups never spill. Each refusal is Error(kConfig)
// naming the numbers. Without a budget nothing is chunked or checked beyond the slots. On
// CUDA with a budget, LibTorch's caching allocator of each card is capped to non-block
// weights + activation room from begin_job to end_job (lifted after the steps: the VAE decode
// is not part of this budget).
//
// Note [Shared weight stores]: with StreamedDitOptions::stores set, the stores come from that
// StoreCache (scheduler/exec/store_cache.h): every StreamedDit of the same expert checkpoint,
// run dtype and pack dir on the pool (two cards running jobs of one model, a group and the
// model's single-card pipelines) streams from ONE WeightStore, so the host tier holds one
// copy of each block; opt.name then names the StreamedDit in logs only (the cache names the
// blobs). Each job registers on the shared stores (StoreCache::begin_job).
//
// Host tier: with host_window_bytes > 0 the job plans the host tier (the idle expert read
// from disk ahead of the switch, the finished one evicted; in a group rank 0's streamer
// plans, the others chain behind its reads) when it may: a job on shared stores plans only
// when it runs alone on them (Note [Shared stores and host planning], store_cache.h); else a
// block read into host memory stays there.
//
// Note [Group cancel]: in a group a rank that stops inside a step leaves the others waiting
// in a collective (NCCL would hang), so the job's cancel check runs on the controlling thread
// before and after each step: a cancel takes effect at the next step boundary. On one card
// it runs between blocks.
//
// Threads: construction, begin_job / end_job, the hook and stats_json on the job's thread,
// one job at a time (a group's runner starts one thread per rank inside each step). Borrows
// the pool (and opt.stores): they must outlive this object.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/dit_block_weights.h"  // RunDtype
#include "model/generator.h"           // CfgForwardFn
#include "model/weight_storage.h"     // WeightsDtype
#include "scheduler/exec/card_job.h"
#include "scheduler/exec/exec_budget.h"
#include "scheduler/exec/store_cache.h"
#include "scheduler/multigpu/parallel_strategy.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class WanDit;
}
namespace wand::sched::exec {
class DitExecutor;
class WeightStore;
}  // namespace wand::sched::exec

namespace wand::sched {

class ParallelDitRunner;

struct StreamedDitRank {
  int device_tier = -1;       // this card's pool tier
  int cuda_device = -1;       // -1: CPU compute (a CpuDeviceTier, a fake card)
  exec::DeviceBudget budget;  // see Note [Streamed budget]
};

struct StreamedDitOptions {
  std::vector<StreamedDitRank> ranks;     // in rank order: one card, or a group
  std::string strategy = "single";        // "single", "cfg-parallel", "ulysses-N", "cfg2xulysses-S"
  model::RunDtype run = model::RunDtype::kFloat32;
  std::string pack_dir;                   // where repacked blocks live (needed when a repack is)
  std::string name = "dit";               // logs; blob prefix of own stores "<name>.hi" / ".lo"
  std::uint64_t window_bytes = 0;         // per-card device prefetch window; 0: from the slots
  // 0: both experts stay in host memory once read; > 0: the host tier is planned over the
  // job (the idle expert is read from disk ahead of the switch) with this window.
  std::uint64_t host_window_bytes = 0;
  // -1: chosen from each card's budget; 0: never chunk; > 0: this chunk (checked against the budget).
  std::int64_t chunk_tokens = -1;
  // One card only (Note [Branch spill]): -1: only when no chunk fits the room with both fp32
  // streams on the device; 0: never; 1: always.
  int spill_uncond = -1;
  // Set: the weight stores come from this cache (Note [Shared weight stores]); it must be over
  // the same pool and outlive this object's jobs. Null: this object opens its own.
  exec::StoreCache* stores = nullptr;
  // Which block tensors the stores hold in fp8 (Note [fp8 stored dtype]).
  model::WeightsDtype weights = model::WeightsDtype::kAuto;
};

class StreamedDit {
 public:
  // expert_dirs: one (ti2v, a single model) or two (A14B: high noise, low noise), each a
  // directory with config.json and shards. Loads every rank's non-block weights and opens (or
  // shares) the stores (a repack happens here, once). Throws Error(kConfig) for a bad group /
  // tier / pack dir, kIo / kModelFormat for unreadable checkpoints.
  StreamedDit(memory::MemoryPool& pool, const std::vector<std::filesystem::path>& expert_dirs,
              StreamedDitOptions options);
  ~StreamedDit();
  StreamedDit(const StreamedDit&) = delete;
  StreamedDit& operator=(const StreamedDit&) = delete;

  // Builds the job's executor. expert_of_step[j] is the expert of generator step
  // first_step + j (0 = high noise / single model, 1 = low noise). Throws Error(kConfig)
  // naming the sizes when a card's budget cannot run it (Note [Streamed budget]).
  void begin_job(std::vector<int> expert_of_step, exec::StreamedJob job = {});
  // The budget begin_job() would take on each card for a job of `seq_len` tokens (rank
  // order); throws what it would throw (a job's preflight, before any phase runs).
  // uncond false: no step guides (one residual stream per card, StreamedJob::uncond);
  // lora_bytes: the job's LoRAs on each card (exec::StreamedJob::lora_bytes).
  std::vector<exec::CardJobBudget> plan_job(std::int64_t seq_len, bool uncond = true,
                                            std::uint64_t lora_bytes = 0) const;
  // Drops the job's executor (its device copies stay cached in the pool until evicted).
  void end_job();
  bool in_job() const { return exec_ != nullptr || runner_ != nullptr; }

  // The hook for GeneratorOptions::cfg_forward (Note [Group cancel]). Valid while this
  // object lives; calls outside begin_job() / end_job() throw Error(kInternal).
  model::CfgForwardFn cfg_forward();

  const ParallelStrategy& strategy() const { return strategy_; }
  int num_ranks() const { return static_cast<int>(opt_.ranks.size()); }
  std::size_t num_experts() const { return stores_.size(); }
  const exec::WeightStore& store(std::size_t expert) const { return *stores_.at(expert); }
  std::uint64_t max_block_bytes(int rank = 0) const;  // on that rank's device tier
  std::uint64_t nonblock_bytes() const { return nonblock_bytes_; }  // per card
  std::int64_t chunk_tokens(int rank = 0) const { return chunks_.at(static_cast<std::size_t>(rank)); }
  bool spills_uncond() const { return spill_; }           // of the current / last job
  bool host_planning() const { return host_planning_; }   // of the current / last job
  // Stores, budget, the current / last job's executor counters and totals over all jobs.
  nlohmann::json stats_json() const;

 private:
  std::pair<at::Tensor, at::Tensor> forward(const model::StepForwardInputs& in, const model::CancelCheck& check);
  std::string who() const;
  std::string rank_who(int q) const;

  memory::MemoryPool& pool_;
  StreamedDitOptions opt_;
  ParallelStrategy strategy_;
  std::vector<std::vector<std::unique_ptr<model::WanDit>>> dits_;  // [rank][expert]
  std::vector<std::shared_ptr<exec::WeightStore>> stores_;         // per expert, all ranks
  std::uint64_t nonblock_bytes_ = 0;     // per card, estimated from the checkpoint (run dtype)
  exec::StoreCache::JobLease lease_;     // the current job's use of shared stores
  std::int64_t first_step_ = 0;
  std::vector<int> expert_of_step_;
  std::vector<std::int64_t> chunks_;     // per rank, of the current / last job
  std::vector<bool> capped_;             // per rank: LibTorch's allocator capped (CUDA)
  bool spill_ = false;
  bool host_planning_ = false;
  std::uint64_t activation_need_ = 0;    // rank 0's, of the current / last job
  std::uint64_t activation_room_ = 0;
  std::unique_ptr<exec::DitExecutor> exec_;    // one card
  std::unique_ptr<ParallelDitRunner> runner_;  // a group

  nlohmann::json last_job_;              // the last finished job's executor counters
  std::uint64_t jobs_ = 0;               // begin_job calls
  std::uint64_t total_device_bytes_in_ = 0;  // finished jobs
  std::uint64_t total_host_bytes_in_ = 0;
  std::uint64_t total_steps_ = 0;
};

}  // namespace wand::sched
