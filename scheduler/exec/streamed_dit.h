// StreamedDit: the DiT experts of one Wan2.2 model served from the memory pool, as the
// CFG-forward hook of model::WanGenerator (GeneratorOptions::cfg_forward). Built once per
// model and reused across jobs; one DitExecutor per job.
//
//   StreamedDitOptions o;
//   o.device_tier = pool.device_tier(0);  o.cuda_device = 0;      // -1: CpuDeviceTier
//   o.run = RunDtype::kBFloat16;  o.pack_dir = "/var/lib/wand/spool";  o.name = "t2v";
//   o.budget.budget_bytes = 24_GiB;  o.budget.context_bytes = measured;
//   StreamedDit sd(pool, {dir / "high_noise_model", dir / "low_noise_model"}, o);
//   GeneratorOptions g;  g.cfg_forward = sd.cfg_forward();     // WanGenerator never loads blocks
//   WanGenerator gen(dir, g);
//   GenState st = gen.prepare(req);
//   sd.begin_job(gen.expert_of_step(st), {0, st.seq_len});     // checks the budget, picks the chunk
//   while (st.completed_steps() < st.total_steps()) gen.step(st, check);
//   sd.end_job();
//   nlohmann::json s = sd.stats_json();
//
// Per expert it owns the WanDit non-block weights (WanDit::load(..., load_blocks=false))
// and a WeightStore (direct over the release shards, or packed once into pack_dir; its
// own, or shared through opt.stores), both kept across jobs. begin_job() builds the job's DitExecutor over the schedule of the
// steps still to run (a resumed job passes first_step = the resumed step and the schedule
// from there); the hook maps the generator's step index k to k - first_step and checks
// that the generator's expert (StepForwardInputs::high_noise) is the one the schedule
// planned.
//
// Note [Streamed budget]: what the device holds is context + weight slots + non-block
// weights + activations. The slots are the device tier (DeviceBudget::slot_bytes, 0: the
// tier's capacity); they must hold two blocks (the block running and the next one; the
// prefetch window is two blocks when the slots hold three, else one). With budget_bytes >
// 0 the activation room is budget - context - slots - non-block weights (activation_bytes
// overrides it when set); the chunk (WanDit::set_chunk_tokens) is the largest token chunk
// whose dit_activation_bytes estimate fits that room, 0 (no chunking) when the whole
// sequence fits (choose_chunk_tokens, exec_budget.h). When no chunk fits with both CFG
// branches' fp32 streams on the device, the uncond stream is spilled to a host blob
// between blocks (spill_uncond = -1) and the chunk chosen again. Each refusal is Error(kConfig)
// naming the numbers. Without a budget nothing is chunked or checked beyond the slots.
// On CUDA with a budget, LibTorch's caching allocator is capped to non-block weights +
// activation room (cap_caching_allocator) from begin_job to end_job (lifted after the
// steps: the VAE decode is not part of this budget).
//
// Note [Shared weight stores]: with StreamedDitOptions::stores set, the stores come from
// that StoreCache (store_cache.h): every StreamedDit of the same expert checkpoint, run
// dtype and pack dir on the pool (two cards running jobs of one model) streams from ONE
// WeightStore, so the host tier holds one copy of each block; opt.name then names the
// StreamedDit in logs only (the cache names the blobs). Each job registers on the shared
// stores (StoreCache::begin_job): with host_window_bytes > 0 the job plans the host tier
// only when it runs alone on them (Note [Shared stores and host planning]).
//
// Threads: everything (construction, begin_job / end_job, the hook, stats_json) on the
// job's thread, one job at a time. Borrows the pool (it must outlive this object); owns
// the DiTs, the stores and the executor.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/dit_block_weights.h"  // RunDtype
#include "model/pipeline.h"           // CfgForwardFn
#include "scheduler/exec/exec_budget.h"
#include "scheduler/exec/store_cache.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class WanDit;
class CheckpointDir;
}  // namespace wand::model

namespace wand::sched::exec {

class DitExecutor;
class WeightStore;
struct StepInputs;

struct StreamedDitOptions {
  int device_tier = -1;                  // pool tier the blocks run from
  int cuda_device = -1;                  // -1: CPU compute (a CpuDeviceTier)
  model::RunDtype run = model::RunDtype::kFloat32;
  std::string pack_dir;                  // where repacked blocks live (needed when a repack is)
  std::string name = "dit";              // blob prefix: "<name>.<expert>.block.<i>"
  DeviceBudget budget;                   // see Note [Streamed budget]
  std::uint64_t window_bytes = 0;        // device prefetch window; 0: from the slots
  // 0: both experts stay in host memory once read; > 0: the host tier is planned over
  // the job (the idle expert is read from disk ahead of the switch) with this window.
  std::uint64_t host_window_bytes = 0;
  // -1: chosen from the budget; 0: never chunk; > 0: this chunk (checked against the budget).
  std::int64_t chunk_tokens = -1;
  // Note [Branch spill] (dit_executor.cpp): -1: only when no chunk fits the room with both
  // fp32 streams on the device; 0: never; 1: always.
  int spill_uncond = -1;
  // Set: the weight stores come from this cache, shared with every other StreamedDit (and
  // group pipeline) of the same expert on the pool (Note [Shared weight stores]); it must
  // be over the same pool and outlive this object's jobs. Null: this object opens its own.
  StoreCache* stores = nullptr;
};

// The job geometry begin_job() needs beyond the schedule.
// For the CFG-forward hooks (StreamedDit here, GroupDit in scheduler/wan): the schedule
// position k = in.step - first_step of a generator step, checked to lie in [0, num_steps) and
// to run the expert the schedule planned for it (planned(k); in.high_noise picks expert 0 of
// two, a single model is expert 0). Throws Error(kInternal) naming `who` and the numbers.
std::int64_t checked_schedule_index(const std::string& who, const model::StepForwardInputs& in,
                                    std::int64_t first_step, std::int64_t num_steps, std::size_t experts,
                                    const std::function<int(std::int64_t)>& planned);
// The executor's inputs of a generator step.
StepInputs step_inputs_of(const model::StepForwardInputs& in);

// Note [Streamed budget] for one card and one job, shared by StreamedDit (one card) and
// GroupDit (each rank of a group): the card's weight slots (budget.slot_bytes, 0: the tier's
// capacity) must hold two blocks; the prefetch window (window_bytes, 0: two blocks when the
// slots hold three, else one); the activation room (budget.activation_bytes, else budget -
// context - slots - non-block weights; 0 without a budget); the token chunk (chunk_tokens >=
// 0: that one; else choose_chunk_tokens for g in the room, retried with the uncond stream
// spilled when spill_fallback) and the activation estimate checked against the room. `who`
// starts every Error(kConfig) (numbers named); `share` is appended to the chunk errors and
// `tokens_text` describes the tokens in the estimate error.
struct CardJobBudget {
  std::uint64_t slots = 0, window = 0, room = 0, need = 0;
  std::int64_t chunk = 0;
  bool spill_uncond = false;  // g.spill_uncond as chosen (the fallback may set it)
};
CardJobBudget plan_card_job(const std::string& who, const DeviceBudget& budget, std::uint64_t tier_capacity,
                            std::uint64_t max_block, std::uint64_t window_bytes, std::uint64_t nonblock_bytes,
                            DitGeometry g, std::int64_t chunk_tokens, bool spill_fallback,
                            const std::string& share, const std::string& tokens_text);

struct StreamedJob {
  std::int64_t first_step = 0;   // generator step index of expert_of_step[0] (a resume)
  std::int64_t seq_len = 0;      // tokens (0: unknown, no activation check or chunking)
};

// The non-block weights of one expert as WanDit holds them in the run dtype (Note
// [Non-block bytes], streamed_dit.cpp): counted from the checkpoint's shapes.
std::uint64_t dit_nonblock_bytes(const model::CheckpointDir& ck, model::RunDtype run);

class StreamedDit {
 public:
  // expert_dirs: one (ti2v, single model) or two (A14B: high noise, low noise), each a
  // directory with config.json and shards. Loads the non-block weights and opens the
  // stores (a repack happens here, once). Throws Error(kConfig) for a bad tier / pack dir,
  // kIo / kModelFormat for unreadable checkpoints.
  StreamedDit(memory::MemoryPool& pool, const std::vector<std::filesystem::path>& expert_dirs,
              StreamedDitOptions options);
  ~StreamedDit();
  StreamedDit(const StreamedDit&) = delete;
  StreamedDit& operator=(const StreamedDit&) = delete;

  // Builds the job's executor. expert_of_step[j] is the expert of generator step
  // first_step + j (0 = high noise / single model, 1 = low noise). Throws Error(kConfig)
  // naming the sizes when the budget cannot run it (Note [Streamed budget]).
  void begin_job(std::vector<int> expert_of_step, StreamedJob job = {});
  // The card budget begin_job() would take for a job of `seq_len` tokens; throws what it
  // would throw (a job's preflight, before any phase runs).
  CardJobBudget plan_job(std::int64_t seq_len) const;
  // Drops the job's executor (its device copies stay cached in the pool until evicted).
  void end_job();
  bool in_job() const { return exec_ != nullptr; }

  // The hook for GeneratorOptions::cfg_forward. Valid while this object lives; calls
  // outside begin_job() / end_job() throw Error(kInternal).
  model::CfgForwardFn cfg_forward();

  std::size_t num_experts() const { return dits_.size(); }
  const WeightStore& store(std::size_t expert) const { return *stores_.at(expert); }
  std::uint64_t max_block_bytes() const;     // on the device tier
  std::uint64_t nonblock_bytes() const { return nonblock_bytes_; }
  std::int64_t chunk_tokens() const { return chunk_; }  // of the current / last job
  bool spills_uncond() const { return spill_; }           // of the current / last job
  bool host_planning() const { return host_planning_; }   // of the current / last job
  // Stores, budget, the current / last job's executor counters and totals over all jobs.
  nlohmann::json stats_json() const;

 private:
  std::pair<at::Tensor, at::Tensor> forward(const model::StepForwardInputs& in, const model::CancelCheck& check);

  memory::MemoryPool& pool_;
  StreamedDitOptions opt_;
  std::vector<std::unique_ptr<model::WanDit>> dits_;
  std::vector<std::shared_ptr<WeightStore>> stores_;  // own, or shared through opt_.stores
  StoreCache::JobLease lease_;           // the current job's use of shared stores
  std::uint64_t nonblock_bytes_ = 0;     // estimated from the checkpoint (run dtype)
  std::int64_t first_step_ = 0;
  std::int64_t chunk_ = 0;
  bool spill_ = false;
  bool host_planning_ = false;           // the job plans the host tier (host_window_bytes > 0)
  bool capped_ = false;                  // LibTorch's allocator capped for this job (CUDA)
  std::uint64_t activation_need_ = 0;
  std::uint64_t activation_room_ = 0;
  std::unique_ptr<DitExecutor> exec_;

  nlohmann::json last_job_;              // the last finished job's executor counters
  std::uint64_t jobs_ = 0;               // begin_job calls
  std::uint64_t total_device_bytes_in_ = 0;  // finished jobs
  std::uint64_t total_host_bytes_in_ = 0;
  std::uint64_t total_steps_ = 0;
};

}  // namespace wand::sched::exec
