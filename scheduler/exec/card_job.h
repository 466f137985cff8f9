// The per-card job plan of a streamed DiT: the budget of one card for one job (slots,
// prefetch window, activation room, token chunk, branch spill), the schedule index checks of
// the CFG-forward hook, and the non-block bytes of an expert. Used by sched::StreamedDit
// (scheduler/wan/streamed_dit.h) for each of its cards.
// Free functions and plain values; any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "model/dit_block_weights.h"  // RunDtype
#include "model/generator.h"           // StepForwardInputs
#include "scheduler/exec/exec_budget.h"

namespace wand::model {
class CheckpointDir;
}

namespace wand::sched::exec {

struct StepInputs;

// For the CFG-forward hook (sched::StreamedDit, scheduler/wan/streamed_dit.h): the schedule
// position k = in.step - first_step of a generator step, checked to lie in [0, num_steps) and
// to run the expert the schedule planned for it (planned(k); in.high_noise picks expert 0 of
// two, a single model is expert 0). Throws Error(kInternal) naming `who` and the numbers.
std::int64_t checked_schedule_index(const std::string& who, const model::StepForwardInputs& in,
                                    std::int64_t first_step, std::int64_t num_steps, std::size_t experts,
                                    const std::function<int(std::int64_t)>& planned);
// The executor's inputs of a generator step.
StepInputs step_inputs_of(const model::StepForwardInputs& in);

// Note [Streamed budget] (scheduler/wan/streamed_dit.h) for one card and one job (each rank
// of a group plans its own): the card's weight slots (budget.slot_bytes, 0: the tier's
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

// The job geometry begin_job() needs beyond the schedule.
struct StreamedJob {
  std::int64_t first_step = 0;   // generator step index of expert_of_step[0] (a resume)
  std::int64_t seq_len = 0;      // tokens (0: unknown, no activation check or chunking)
  // false: no step still to run guides (Note [Guidance 1], model/sampler_schedule.h): one
  // residual stream on each card, the branch spill moot.
  bool uncond = true;
  // The job's LoRAs on the card (model::lora_card_bytes, Note [LoRA merge]): held beside the
  // non-block weights, so the activation room shrinks by as much.
  std::uint64_t lora_bytes = 0;
};

// The non-block weights of one expert as WanDit holds them in the run dtype (Note
// [Non-block bytes], streamed_dit.cpp): counted from the checkpoint's shapes.
std::uint64_t dit_nonblock_bytes(const model::CheckpointDir& ck, model::RunDtype run);

}  // namespace wand::sched::exec
