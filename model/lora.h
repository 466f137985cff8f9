// LoRAs of the Wan2.2 DiT experts, merged into each block as it runs.
//
//   auto file = LoraFile::read("/srv/loras/distill-high.safetensors", cfg);  // checks every key
//   auto lora = DitLora::build({{file, /*strength=*/1.0}}, at::Device(at::kCUDA, 0), RunDtype::kBFloat16);
//   BlockLoop blocks = with_lora(streamer.loop(k), lora.get());   // or dit.owned_blocks()
//   auto [cond, uncond] = dit.forward_cfg(x, t, ctx, ctx_null, seq_len, y, blocks);
//
// Note [LoRA merge]: a LoRA is merged into a per-block scratch, never into the weights it
// changes. For each block use, every tensor the job's LoRAs change is computed anew:
//   W' = round_run(W_fp32 + sum_l strength_l x (alpha_l / rank_l) x up_l @ down_l + strength_l x diff_l)
// in fp32 (row chunks of at most kMergeChunkBytes of fp32), rounded to the run's GEMM dtype,
// then held in the field's dtype (fp32 for modulation and norm3, as DitBlockWeights keeps
// them: the rounded value); biases take strength x diff_b the same way. The other tensors
// stay views of the block's weights. Why a scratch, not an in-place merge:
//  - the device tier keeps block copies in slots across steps and jobs (Note [Per-card
//    streaming]) and several cards share the one host copy: a merged slot would have to be
//    keyed by the LoRA set, merged exactly once per fill and refetched for a job without it;
//    the scratch leaves every cached byte the checkpoint's, so a job without LoRAs after one
//    with them reads the same slots bitwise (tested), and no second copy of an expert exists;
//  - the resident path (WanGenerator's own experts) needs no unmerge or reload when the set
//    changes, and streamed == resident holds by construction (one merge routine);
//  - the cost is small beside the block: rank r adds 2 r x out x in FLOPs per changed GEMM
//    weight (A14B, r = 64, all ten GEMMs of a block: 45 GFLOP, ~0.1 ms on an H100) plus an
//    elementwise pass over the changed weights (the block's 0.7 GB read and rewritten in bf16
//    with an fp32 temporary, ~1 ms at H100 bandwidth), against 69 ms (480p) to 288 ms (720p)
//    per block forward: under 2% at 480p, both CFG branches sharing one merge.
// Card bytes: the factors of the job's LoRAs (kept on the card for the job, in their stored
// dtype; rank 64 on A14B: ~15 MiB per block, 0.6 GiB per expert) plus one block's changed
// tensors in the run dtype and one fp32 chunk (lora_card_bytes()).
// A LoRA of strength 0 is not built at all (common/job_request.h, effective_loras): such a
// job is bitwise the job without it.
//
// LoraFile: immutable after read (any thread). DitLora: immutable after build; apply() is
// const and may run from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "model/dit.h"  // BlockLoop
#include "model/dit_block_weights.h"
#include "model/formats/lora_keys.h"
#include "model/wan_config.h"

namespace wand::model {

// The fp32 temporary of one merge chunk (Note [LoRA merge]).
constexpr std::uint64_t kMergeChunkBytes = 64ull << 20;

// One LoRA file read and checked against a model (formats::index_lora), its tensors on the
// CPU in their stored dtype.
class LoraFile {
 public:
  // Throws Error(kIo) for an unreadable file, Error(kModelFormat) naming the file and the key
  // for a truncated file, an unknown layout, a key or shape the model does not have.
  static std::shared_ptr<const LoraFile> read(const std::string& path, const WanConfig& cfg);

  // The same file with its tensors on `device` (one device copy shared by both experts' DitLora).
  std::shared_ptr<const LoraFile> to(at::Device device) const;

  const formats::LoraIndex& index() const { return index_; }
  const std::string& path() const { return index_.path; }
  const at::Tensor& tensor(const std::string& file_key) const;

 private:
  formats::LoraIndex index_;
  std::vector<std::pair<std::string, at::Tensor>> tensors_;  // sorted by file key
};

// The LoRAs of one expert for a job, on the run device.
class DitLora {
 public:
  struct Use {
    std::shared_ptr<const LoraFile> file;
    double strength = 1.0;
  };
  // Uploads the factors of every use to `device` for a run in `run`. Uses of strength 0 are
  // skipped.
  static std::shared_ptr<const DitLora> build(const std::vector<Use>& uses, at::Device device, RunDtype run);

  bool empty() const { return terms_.empty(); }
  // w with the changed tensors of block i replaced by merged ones (Note [LoRA merge]);
  // w itself is left as it is. Blocks without a change return w.
  DitBlockWeights apply(int64_t block, const DitBlockWeights& w) const;
  std::uint64_t factor_bytes() const { return factor_bytes_; }     // on the device
  std::uint64_t max_block_changed_elements() const { return max_changed_; }  // per block
  std::string describe() const;  // "name:strength, ..." for logs
  const std::vector<std::pair<const void*, std::uint64_t>>& factor_storage() const { return factor_storage_; }

 private:
  struct Term {
    at::Tensor up, down;  // [out, r], [r, in] (stored dtype); undefined: a diff only
    double scale = 0;     // strength x alpha / rank
    at::Tensor diff;      // full delta of the tensor's shape (stored dtype)
    double diff_scale = 0;
  };
  struct Change {
    int field = 0;             // index into DitBlockWeights::fields()
    std::vector<Term> terms;   // in use order
  };
  std::vector<std::vector<Change>> terms_;  // [block][change]; empty when nothing changes
  std::uint64_t factor_bytes_ = 0;
  std::vector<std::pair<const void*, std::uint64_t>> factor_storage_;  // (data, bytes) of each factor
  std::uint64_t max_changed_ = 0;
  RunDtype run_ = RunDtype::kFloat32;
  std::string describe_;
};

// The loop `inner` with each block's weights passed through lora->apply (Note [Block
// loops]); `inner` itself when lora is null or empty.
BlockLoop with_lora(BlockLoop inner, const DitLora* lora);

// Card bytes of a job's LoRAs beside the blocks (Note [LoRA merge]): the factors (a file used by
// both experts counted once) + one block's changed tensors in the run dtype + one fp32 merge
// chunk; 0 when there is none. Null entries are skipped.
std::uint64_t lora_card_bytes(const std::vector<std::shared_ptr<const DitLora>>& loras, RunDtype run);

}  // namespace wand::model
