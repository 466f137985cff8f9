// DitExecutor: runs the denoising steps of a job's DiT experts with their blocks streamed
// through a device tier of the memory pool.
//
//   std::vector<ExecutorExpert> ex = {{&dit_hi, &store_hi}, {&dit_lo, &store_lo}};
//   std::vector<int> expert_of_step = {0, 0, ..., 1, 1};        // by the MoE boundary
//   ExecutorOptions o;  o.device_tier = pool.device_tier(0);  o.cuda_device = 0;
//   DitExecutor exec(pool, ex, expert_of_step, o);              // checks the budget
//   for (int k = 0; k < steps; ++k) {
//     auto [cond, uncond] = exec.step(k, in, &cancel);          // both CFG branches
//     ...sampler...
//   }
//   nlohmann::json s = exec.stats_json();
//
// The blocks come from one BlockStreamer (block_streamer.h, Note [Per-card streaming]:
// device planning, host planning when host_window_bytes > 0, pin / fence / release) and
// run in WanDit::forward_cfg (model/dit.h, Note [Block loops]): both CFG branches per
// block, each block's weights crossing PCIe once per step; with spill_uncond the uncond
// stream waits in a host blob of the pool between blocks (Note [Branch spill]). The cancel
// check runs between blocks.
//
// Owns its streamer and counters; borrows the pool, the DiTs and the stores (they must
// outlive it). One thread (the job's) calls step() / forward(); stats_json() from the same
// thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "memory/blob.h"  // BlobId
#include "scheduler/exec/block_streamer.h"
#include "scheduler/exec/exec_budget.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class WanDit;
class DitLora;
}
namespace wand::sched {
class CancelToken;
}

namespace wand::sched::exec {

class WeightStore;

struct ExecutorExpert {
  const model::WanDit* dit = nullptr;   // non-block weights (loaded with load_blocks = false)
  const WeightStore* store = nullptr;   // its blocks
};

struct ExecutorOptions {
  int device_tier = -1;                 // pool tier the blocks run from
  int cuda_device = -1;                 // -1: CPU compute (a CpuDeviceTier)
  std::uint64_t window_bytes = 0;       // device prefetch window; 0: two largest blocks
  std::uint64_t host_window_bytes = 0;  // host prefetch window (disk -> host); 0: no host planning
  DeviceBudget budget;                  // slot_bytes 0: the device tier's capacity
  std::uint64_t activation_need_bytes = 0;  // dit_activation_bytes(...) (0: not checked)
  // Note [Branch spill]: keep the uncond branch's fp32 residual stream in a host blob
  // of the pool between blocks (step() only).
  bool spill_uncond = false;
};

struct StepInputs {
  at::Tensor x;             // [C, F, H, W] latent
  at::Tensor t;             // [1] timestep (or per-token, ti2v)
  at::Tensor context;       // [L_txt, text_dim]
  at::Tensor context_null;  // [L_txt, text_dim] negative prompt (step() only)
  std::int64_t seq_len = 0;
  c10::optional<at::Tensor> y;  // i2v conditioning
  // false: guidance 1 at this step (Note [Guidance 1], model/sampler_schedule.h): step() runs
  // the cond branch alone and returns (cond, undefined); context_null may be undefined.
  bool uncond = true;
  const model::DitLora* lora = nullptr;  // the job's LoRAs of this step's expert (model/lora.h, Note [LoRA merge])
};

// The streamer's counters (block_streamer.h) and the executor's own.
struct ExecutorStats : BlockStreamerStats {
  double step_s = 0;                      // wall time inside step() / forward()
  std::uint64_t spill_bytes = 0;          // uncond stream bytes copied to + from host (Note [Branch spill])
  std::uint64_t forwards = 0;             // branch forwards run: 2 per CFG step, 1 at guidance 1 / forward()
};

class DitExecutor {
 public:
  DitExecutor(memory::MemoryPool& pool, std::vector<ExecutorExpert> experts, std::vector<int> expert_of_step,
              ExecutorOptions options);
  ~DitExecutor();
  DitExecutor(const DitExecutor&) = delete;
  DitExecutor& operator=(const DitExecutor&) = delete;

  // Step k: both CFG branches interleaved per block. Returns (cond, uncond), each
  // [out_dim, F, H, W] fp32 (in.uncond false: one forward, (cond, undefined)). Throws
  // wand::Error(kCancelled) between blocks when asked.
  std::pair<at::Tensor, at::Tensor> step(std::int64_t k, const StepInputs& in, const CancelToken* cancel = nullptr);
  // Step k's expert, cond branch only (one expert forward).
  at::Tensor forward(std::int64_t k, const StepInputs& in, const CancelToken* cancel = nullptr);
  // step() with an arbitrary check called between blocks (model::CancelCheck: it throws
  // to stop, e.g. the job's CancelToken wrapped by the pipeline). Empty: no check.
  std::pair<at::Tensor, at::Tensor> step_checked(std::int64_t k, const StepInputs& in,
                                                 const std::function<void()>& check);

  std::int64_t num_steps() const { return streamer_->num_steps(); }
  int expert_of_step(std::int64_t k) const { return streamer_->expert_of_step(k); }
  std::uint64_t window_bytes() const { return streamer_->window_bytes(); }
  const ExecutorStats& stats() const { return stats_; }
  nlohmann::json stats_json() const;

 private:
  class Spill;
  std::vector<at::Tensor> run(std::int64_t k, const StepInputs& in, bool cfg, const std::function<void()>& check);

  memory::MemoryPool& pool_;
  std::vector<ExecutorExpert> experts_;
  ExecutorOptions opt_;
  std::unique_ptr<BlockStreamer> streamer_;
  ExecutorStats stats_;
  memory::BlobId spill_blob_ = 0;          // host blob of the spilled uncond stream (0: none yet)
  std::uint64_t spill_blob_bytes_ = 0;
};

}  // namespace wand::sched::exec
