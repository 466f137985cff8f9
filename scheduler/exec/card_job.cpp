#include "scheduler/exec/card_job.h"

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/dit_block_weights.h"
#include "scheduler/exec/dit_executor.h"

namespace wand::sched::exec {

// Note [Non-block bytes]: the non-block weights as WanDit holds them: the patch and text
// embeddings in the run dtype, the time MLP, time projection and head in fp32 (dit.h,
// Note [DiT precision islands]). Counted from the checkpoint's shapes, not measured; on
// CUDA the allocator's reserved bytes after loading are the measured figure.
std::uint64_t dit_nonblock_bytes(const model::CheckpointDir& ck, model::RunDtype run) {
  const std::uint64_t run_bytes = c10::elementSize(model::gemm_dtype(run));
  std::uint64_t total = 0;
  for (const std::string& n : ck.names()) {
    if (n.rfind("blocks.", 0) == 0) continue;
    const bool run_dtype = n.rfind("patch_embedding", 0) == 0 || n.rfind("text_embedding", 0) == 0;
    total += static_cast<std::uint64_t>(ck.info(n).numel()) * (run_dtype ? run_bytes : 4);
  }
  return total;
}

std::int64_t checked_schedule_index(const std::string& who, const model::StepForwardInputs& in,
                                    std::int64_t first_step, std::int64_t num_steps, std::size_t experts,
                                    const std::function<int(std::int64_t)>& planned) {
  const std::int64_t k = in.step - first_step;
  if (k < 0 || k >= num_steps) {
    throw Error(ErrorCode::kInternal, who + ": generator step " + std::to_string(in.step) +
                                          " is outside the job's schedule (steps " + std::to_string(first_step) +
                                          ".." + std::to_string(first_step + num_steps - 1) + ")");
  }
  const int want = (experts == 1 || in.high_noise) ? 0 : 1;
  const int plan = planned(k);
  if (plan != want) {
    throw Error(ErrorCode::kInternal, who + ": step " + std::to_string(in.step) + " runs expert " +
                                          std::to_string(want) + " but the schedule planned " + std::to_string(plan));
  }
  return k;
}

StepInputs step_inputs_of(const model::StepForwardInputs& in) {
  StepInputs s;
  s.x = in.x;
  s.t = in.t;
  s.context = in.context;
  s.context_null = in.context_null;
  s.seq_len = in.seq_len;
  s.y = in.y;
  s.uncond = in.uncond;
  s.lora = in.lora;
  return s;
}

CardJobBudget plan_card_job(const std::string& who, const DeviceBudget& budget, std::uint64_t tier_capacity,
                            std::uint64_t max_block, std::uint64_t window_bytes, std::uint64_t nonblock_bytes,
                            DitGeometry g, std::int64_t chunk_tokens, bool spill_fallback,
                            const std::string& share, const std::string& tokens_text) {
  CardJobBudget r;
  r.slots = budget.slot_bytes > 0 ? budget.slot_bytes : tier_capacity;
  if (r.slots < 2 * max_block) {
    throw Error(ErrorCode::kConfig, who + " has " + format_bytes(r.slots) + " of weight slots (" +
                                        std::to_string(r.slots) + " bytes) but streaming needs two blocks of " +
                                        format_bytes(max_block) + " (" + std::to_string(max_block) +
                                        " bytes each: the block running and the next) = " + format_bytes(2 * max_block));
  }
  // Window: two blocks ahead when the slots hold three (window + the block being released).
  r.window = window_bytes > 0 ? window_bytes : (r.slots >= 3 * max_block ? 2 * max_block : max_block);
  r.room = budget.activation_bytes;
  if (r.room == 0 && budget.budget_bytes > 0) {
    const std::uint64_t fixed = budget.context_bytes + r.slots + nonblock_bytes;
    if (fixed >= budget.budget_bytes) {
      throw Error(ErrorCode::kConfig, who + ": device budget " + format_bytes(budget.budget_bytes) +
                                          " leaves no room for activations: context " +
                                          format_bytes(budget.context_bytes) + " + weight slots " +
                                          format_bytes(r.slots) + " + non-block weights " +
                                          format_bytes(nonblock_bytes) + " = " + format_bytes(fixed));
    }
    r.room = budget.budget_bytes - fixed;
  }
  if (chunk_tokens >= 0) {
    r.chunk = chunk_tokens;
  } else if (r.room > 0 && g.tokens > 0) {
    try {
      r.chunk = choose_chunk_tokens(g, r.room);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kConfig || g.spill_uncond || !spill_fallback) {
        if (share.empty()) throw;
        throw Error(e.code(), who + ": " + e.what() + share);
      }
      g.spill_uncond = true;  // one fp32 stream on the device between blocks
      try {
        r.chunk = choose_chunk_tokens(g, r.room);
      } catch (const Error& e2) {
        throw Error(ErrorCode::kConfig, who + ": " + e2.what() + " (with the uncond stream spilled to host)" + share);
      }
    }
  }
  g.chunk_tokens = r.chunk;
  r.spill_uncond = g.spill_uncond;
  r.need = (r.room > 0 && g.tokens > 0) ? dit_activation_bytes(g) : 0;
  if (r.need > r.room) {
    throw Error(ErrorCode::kConfig, who + ": activation room " + format_bytes(r.room) +
                                        " is below the estimated activation peak " + format_bytes(r.need) + " (" +
                                        tokens_text + ", chunk " + std::to_string(r.chunk) + ")");
  }
  return r;
}

}  // namespace wand::sched::exec
