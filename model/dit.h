// WanDit: the Wan2.2 DiT (wan.modules.model.WanModel) for t2v-A14B, i2v-A14B,
// ti2v-5B and the tiny presets, with its forward exposed as stages.
//
//   CheckpointDir ck("Wan2.2-T2V-A14B/high_noise_model");
//   WanDit dit = WanDit::load(ck, RunDtype::kBFloat16, at::kCUDA, /*load_blocks=*/false);
//   DitInputs in = dit.embed(x, t, context, seq_len);      // patch + time + text + RoPE
//   at::Tensor h = in.tokens;                              // [1, S, D]
//   for (int i = 0; i < dit.num_layers(); ++i)
//     h = dit.block(i, h, in, weights_from_slot(i));       // weights handed in, not owned
//   at::Tensor v = dit.head(h, in);                        // [out_dim, F, H, W] fp32
//
// CFG interleaved per block (both branches share each block's weights), with the blocks
// from wherever they live (Note [Block loops]):
//   auto [cond, uncond] = dit.forward_cfg(x, t, ctx, ctx_null, seq_len, y, streamer.loop(k));
//
// Note [DiT precision islands]: the dtype each part of the forward runs in.
// RunDtype::kFloat32 computes everything in fp32 (the golden cases; RoPE in
// float64). kBFloat16 / kFloat16 reproduce the official bf16 autocast run with
// every parameter converted to the run dtype (--convert_model_dtype and the
// FSDP recipe, the mode the reference recommends for the port; reference
// §3.5-3.9), which keeps islands of higher precision inside the run dtype:
//  - run dtype: every block GEMM and the patch and text embeddings; q, k, v
//    into the attention; the qk-RMSNorm output (fp32 statistics, the
//    normalised value rounded, times the run-dtype weight); the tanh-GELU of
//    the FFN hidden.
//  - fp32: the residual stream (block 0's input, the patch embedding, is in the
//    run dtype, so block 0's LayerNorm output is rounded to it once: the
//    official quirk), the LayerNorms, the modulation and the gated adds, the
//    time MLP, the time projection and the head, whose GEMMs are the only fp32
//    GEMMs (the official nested fp32 autocast). The parameters used in fp32
//    (modulation, norm3, time, head) are rounded to the run dtype once at load,
//    as the converted checkpoint has them.
//  - float64: the timestep sinusoid and the RoPE tables; RoPE is applied in
//    fp32 (float64 in the fp32 mode) and rounded to the run dtype.
// Time embeddings are computed once per distinct timestep (one row for A14B,
// at most two for ti2v) and broadcast: only the GEMM's row count differs from
// the official per-token run. The fused CUDA kernels keep these islands op for
// op (Note [Fused DiT kernels]); the CPU path spells the mixed-dtype adds out
// (Note [Fused mixed-dtype elementwise], dit.cpp); the streamed executor counts
// the non-block bytes by the same rule (Note [Non-block bytes]).
//
// Owns the non-block weights (patch, text, time, head) and, when loaded with
// load_blocks, the block weights. The module never moves weights. Calls are
// const and may run concurrently on different inputs; set_chunk_tokens is not
// thread-safe against running calls.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "model/dit_block_weights.h"
#include "model/tensor_source.h"
#include "model/wan_config.h"

namespace wand::model {

class CheckpointDir;

// Note [Block loops]: a forward takes its block weights from a loop that knows where they
// live: the DiT's own (WanDit::owned_blocks), a streamer over the memory pool
// (sched::exec::BlockStreamer: plan, prefetch, pin, fence, release), or a test's.
// loop(body) runs body(i, w_i) for i = 0..L-1 in order; w_i is valid during the call only.
// The forwards below are the ONE place the order of a DiT's work is written (embed, blocks
// with both CFG branches interleaved, head); the drivers differ only in their loop (and the
// Ulysses driver in its block, scheduler/multigpu/ulysses_dit.h).
using BlockBody = std::function<void(int64_t i, const DitBlockWeights& w)>;
using BlockLoop = std::function<void(const BlockBody& body)>;

// Where WanDit::forward_cfg keeps the uncond branch's residual stream between blocks when
// the card should hold one fp32 stream, not two (Note [Branch spill], the streaming
// executor's host blob). put(h) after each uncond block (h [1, S, D] fp32 may then leave
// the device); take() before the next uncond block and before the head returns it on the
// DiT's device. Copies must be exact: results do not change.
class BranchStash {
 public:
  virtual ~BranchStash() = default;
  virtual void put(const at::Tensor& h) = 0;
  virtual at::Tensor take() = 0;
};

// Everything the blocks and the head need besides the residual stream.
struct DitInputs {
  at::Tensor tokens;        // [1, S, D] patch embedding, zero rows for padding (run dtype)
  at::Tensor context;       // [1, text_len, D] text embedding (run dtype)
  at::Tensor sin_emb;       // [R, freq_dim] float64 sinusoid of the R distinct timesteps
  at::Tensor e;             // [R, D] fp32 time embedding
  at::Tensor e0;            // [R, 6, D] fp32 time projection
  at::Tensor row_of_token;  // [S] int64 row of e/e0 per token; undefined when R == 1
  at::Tensor rope;          // [S, head_dim/2, 2] per-token (cos, sin)
  int64_t grid_f = 0, grid_h = 0, grid_w = 0;  // token grid (F, H/2, W/2)
  int64_t num_tokens = 0;                       // F * H/2 * W/2
  int64_t seq_len = 0;                          // S >= num_tokens
  // Optional self-attention override (sequence parallelism, scheduler/multigpu):
  // receives q, k, v [1, S, N, head_dim] (run dtype, after RoPE) of this
  // input's S tokens and returns the attention output [1, S, N, head_dim].
  // When set, the block does not drop padded keys itself: the override owns
  // that (k_lens). Unset: plain attention over the first num_tokens keys.
  std::function<at::Tensor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v)> self_attention;
};

class WanDit {
 public:
  static WanDit load(const CheckpointDir& ck, RunDtype run, at::Device device, bool load_blocks = true);
  static WanDit load(const TensorSource& src, const WanConfig& cfg, RunDtype run, at::Device device,
                     bool load_blocks = true);

  const WanConfig& config() const { return cfg_; }
  RunDtype run_dtype() const { return run_; }
  at::Device device() const { return device_; }
  int64_t num_layers() const { return cfg_.num_layers; }
  bool has_blocks() const { return !blocks_.empty(); }
  const DitBlockWeights& block_weights(int64_t i) const;
  // Split token-wise GEMMs (q/k/v/o projections, FFN) into chunks of this many
  // tokens to bound activation memory; 0 = whole sequence. Same results.
  void set_chunk_tokens(int64_t n) { chunk_tokens_ = n; }
  int64_t chunk_tokens() const { return chunk_tokens_; }

  // x [C, F, H, W] latent; t: [1] / scalar timestep or [1, seq_len] / [seq_len]
  // per-token timesteps (ti2v); context [L_txt, text_dim] with L_txt <= text_len;
  // y [C_y, F, H, W] (i2v) concatenated to x along channels.
  DitInputs embed(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                  const c10::optional<at::Tensor>& y = c10::nullopt) const;
  // [L_txt, text_dim] -> [1, text_len, D]: zero-padded to text_len, then the text MLP.
  at::Tensor embed_text(const at::Tensor& context) const;
  // Sinusoidal timestep embedding [n] -> [n, freq_dim] float64 (cos first).
  at::Tensor sinusoid(const at::Tensor& t) const;

  // One block: x [1, S, D] (run dtype for block 0, then fp32) -> [1, S, D] fp32.
  at::Tensor block(int64_t i, const at::Tensor& x, const DitInputs& in, const DitBlockWeights& w) const;
  at::Tensor block(int64_t i, const at::Tensor& x, const DitInputs& in) const;  // owned weights
  // Head before unpatchify: [1, S, D] -> [1, S, 4 * out_dim] fp32.
  at::Tensor head_tokens(const at::Tensor& x, const DitInputs& in) const;
  // [1, S, 4 * out_dim] -> [out_dim, F, H, W] (first num_tokens rows).
  at::Tensor unpatchify(const at::Tensor& head_out, const DitInputs& in) const;
  at::Tensor head(const at::Tensor& x, const DitInputs& in) const { return unpatchify(head_tokens(x, in), in); }

  // The loop over the DiT's own block weights (load_blocks) (Note [Block loops]).
  BlockLoop owned_blocks() const;

  // embed -> all blocks -> head: [out_dim, F, H, W] fp32. Without `blocks`: the owned ones.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                     const c10::optional<at::Tensor>& y = c10::nullopt) const;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& context, int64_t seq_len,
                     const c10::optional<at::Tensor>& y, const BlockLoop& blocks) const;
  // Both CFG branches, interleaved per block (each block's weights used twice in a row:
  // they cross PCIe once per step when streamed). Returns (cond, uncond) predictions. With
  // a stash the uncond stream waits in it between blocks (BranchStash).
  std::pair<at::Tensor, at::Tensor> forward_cfg(const at::Tensor& x, const at::Tensor& t,
                                                const at::Tensor& context, const at::Tensor& context_null,
                                                int64_t seq_len,
                                                const c10::optional<at::Tensor>& y = c10::nullopt) const;
  std::pair<at::Tensor, at::Tensor> forward_cfg(const at::Tensor& x, const at::Tensor& t,
                                                const at::Tensor& context, const at::Tensor& context_null,
                                                int64_t seq_len, const c10::optional<at::Tensor>& y,
                                                const BlockLoop& blocks, BranchStash* stash = nullptr) const;

  // The float64 RoPE table [1024, head_dim/2, 2].
  const at::Tensor& freqs() const { return freqs_; }

 private:
  WanDit() = default;
  at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const;
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const;
  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const;

  WanConfig cfg_;
  RunDtype run_ = RunDtype::kFloat32;
  at::Device device_ = at::kCPU;
  int64_t chunk_tokens_ = 0;
  // Non-block weights.
  at::Tensor patch_w_, patch_b_;            // [D, in_dim * 4] (run dtype), [D]
  at::Tensor text0_w_, text0_b_, text2_w_, text2_b_;  // run dtype
  at::Tensor time0_w_, time0_b_, time2_w_, time2_b_;  // fp32 (values rounded to the run dtype)
  at::Tensor proj_w_, proj_b_;              // [6D, D] fp32
  at::Tensor head_w_, head_b_;              // [4 * out_dim, D] fp32
  at::Tensor head_mod_;                     // [1, 2, D] fp32
  at::Tensor freqs_;                        // [1024, d/2, 2] float64 (CPU)
  at::Tensor freqs_dev_;                    // the same on the run device
  std::vector<DitBlockWeights> blocks_;
};

}  // namespace wand::model
