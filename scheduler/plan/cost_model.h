// The planner's cost model: tokens of a job, FLOPs and bytes of one DiT block, the time of
// a block on a card from the Calibration, the activation peak, and the expert schedule.
//
//   JobGeometry g = job_geometry(shape, spec);     // S = F_lat * H_lat/2 * W_lat/2, steps per expert
//   BlockWork w = block_work(shape, g.tokens, g.tokens, /*ranks=*/1);
//   double s = block_compute_s(w, cal.rates_for(0), cal, /*branches=*/2);   // both CFG branches
//
// Note [Block cost model]: one DiT block at S tokens (D = dim, F = ffn_dim, L = text_len):
//   GEMM FLOP       = 8 S D^2 (self q, k, v, o) + 4 S D^2 (cross q, o) + 4 L D^2 (cross k, v)
//                   + 4 S D F (FFN)
//   attention FLOP  = 4 S^2 D (self: QK^T and PV) + 4 S L D (cross)
//   elementwise     = passes x S x D x 4 bytes (fp32 [S, D] passes through HBM)
//   time            = GEMM / gemm rate + attention / attention rate + elementwise / HBM rate.
// Worked example (t2v-A14B, 832x480x81: S = 21 x 30 x 52 = 32,760): GEMM 1.9634e13, attention
// 2.2323e13, elementwise 40 x 32,760 x 20,480 B = 26.8 GB; at the default H100 rates 23.8 +
// 38.5 + 18.6 = 80.9 ms (measured C++ block: 79.1 ms). Ulysses over W ranks: every rank does
// the GEMMs and elementwise work of its S/W tokens (the cross-attention k, v of the L text
// tokens in full) and the attention of N/W heads over all S_pad tokens: 4 S_pad^2 D / W.
// A streamed block costs max(compute, bytes / PCIe) with the next block's copy overlapped
// (prefetch depth >= 1); a resident block costs its compute. Both CFG branches run on the
// block's one copy: compute x 2, transfer x 1.
//
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/job_spec.h"
#include "scheduler/plan/calibration.h"
#include "scheduler/plan/model_shape.h"

namespace wand::sched::plan {

// Note [LoRA cost]: a job's LoRAs (model/lora.h, Note [LoRA merge]) hold their factors on the
// card for the job (one copy per file) and one merge scratch (one block's changed tensors in
// the run dtype + a 64 MiB fp32 chunk), and each block use costs a merge: 2 r x out x in FLOP
// per low-rank pair (at the GEMM rate) plus an elementwise pass over the changed tensors (about
// 12 bytes per element through HBM: read W, write W', the fp32 chunk twice); both CFG branches
// share it. Read from the files' headers (LibTorch-free), spread evenly over the blocks.
// Worked example (A14B, rank 64 on the ten GEMMs of 40 blocks, bf16): factors 0.6 GiB per
// file; per block 45 GFLOP (0.08 ms at 560 TFLOP/s) + 351 M elements x 12 B (1.3 ms at
// 3.2 TB/s): 1.4 ms per block against 69 ms (480p) of compute.
struct LoraCost {
  int files = 0;
  std::uint64_t card_bytes = 0;            // factors + scratch
  double merge_flop_per_block = 0;
  double merge_elements_per_block = 0;
  nlohmann::json to_json() const;
};
// Throws Error(kBadRequest) naming the file when its header cannot be read.
LoraCost lora_cost(const ModelShape& m, const std::vector<std::string>& files);
double lora_merge_s(const LoraCost& c, const DeviceRates& r);

struct JobGeometry {
  int width = 0, height = 0, frames = 0, steps = 0;
  std::int64_t lat_f = 0, lat_h = 0, lat_w = 0;
  std::int64_t tokens = 0;   // S
  int steps_high = 0;        // steps on experts[0] (high-noise; every step for one expert)
  int steps_low = 0;         // steps on experts[1]
  double shift = 0.0;
  // CFG branches per step (Note [Guidance 1], model/sampler_schedule.h): 1 when no step of the
  // job guides (guide scale 1 on every step), else 2. A job whose two experts differ (one scale
  // 1) counts 2: the card must hold the guided steps' two streams, and the time is counted as
  // if every step guided (an overestimate of the unguided expert's steps).
  int branches = 2;
  LoraCost lora;             // the spec's LoRAs (lora_files), Note [LoRA cost]
  nlohmann::json to_json() const;
};

// Sizes / frames / steps from the spec (0 = the model's default); throws Error(kBadRequest)
// when the size is not a multiple of the VAE stride x patch or frames != 4k + 1.
JobGeometry job_geometry(const ModelShape& m, const JobSpec& spec);

// Number of the first `steps` sampler steps that run on the high-noise expert
// (timestep >= boundary x 1000, model/sampler_schedule.cpp; reimplemented: LibTorch-free).
// sampler: "unipc", "dpm++" / "dpmpp" or "euler".
int high_noise_steps(const std::string& sampler, int steps, double shift, double boundary);

struct BlockWork {
  double gemm_flop = 0;
  double attention_flop = 0;
  double elementwise_tokens = 0;  // tokens whose [D] fp32 rows the elementwise passes touch
};

// One branch of one block on one rank: tokens_local = S_pad / ranks, tokens_total = S_pad.
BlockWork block_work(const ModelShape& m, std::int64_t tokens_local, std::int64_t tokens_total, int ranks);

struct BlockTime {
  double gemm_s = 0, attention_s = 0, elementwise_s = 0;
  double total() const { return gemm_s + attention_s + elementwise_s; }
};
BlockTime block_time(const ModelShape& m, const BlockWork& w, const DeviceRates& r, const Calibration& c);

// Activation peak of one step on one card (the formula of sched::exec::dit_activation_bytes,
// reimplemented here because wand_sched_exec links LibTorch; tests check the two agree).
// branches = residual streams held (2: both CFG branches, 1: CFG-parallel).
std::uint64_t activation_bytes(std::int64_t tokens, std::int64_t dim, std::int64_t ffn_dim, std::int64_t text_len,
                               std::int64_t chunk_tokens, int run_bytes, int branches);

}  // namespace wand::sched::plan
