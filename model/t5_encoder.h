// umT5-XXL text encoder (wan/modules/t5.py T5Encoder, encoder only, per-layer
// relative position tables), with the official numerics.
//
//   T5Encoder enc = T5Encoder::load(dir + "/models_t5_umt5-xxl-enc-bf16.pth",
//                                   RunDtype::kBFloat16, at::kCUDA);
//   TokenizedText tt = tokenizer.encode(clean_text(prompt));      // [1, 512] ids + mask
//   std::vector<at::Tensor> ctx = enc.encode(tt.ids, tt.mask);    // {[L_true, 4096]}
//
//   // Staged, for an executor that streams the 24 blocks' weights:
//   T5Encoder enc = T5Encoder::load(src, RunDtype::kBFloat16, dev, /*load_blocks=*/false);
//   at::Tensor x = enc.embed(ids);                                  // [B, L, dim]
//   for (int i = 0; i < enc.num_layers(); ++i)
//     x = enc.block(i, x, mask, T5BlockWeights::from(src, i, run, dev));
//   x = enc.final_norm(x);
//
// The architecture (vocab, dim, dim_attn, heads, ffn, layers, buckets) is read
// from the tensor shapes, so tiny and full-size checkpoints load the same way.
// Numerics (Note [umT5 numerics] in t5_encoder.cpp): kFloat32 is plain float32
// math (golden tests); kBFloat16 is the official bf16 run: bf16 weights and
// activations, fp32 only for the RMS statistics and the softmax, the GELU as a
// chain of bf16 ops, no 1/sqrt(d) scaling, masked keys get the lowest value.
// The encoder owns the token embedding and final norm; it owns the block
// weights only when loaded with load_blocks. const methods may be called from
// any thread (no mutable state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "model/dit_block_weights.h"  // RunDtype
#include "model/tensor_source.h"
#include "model/tokenizer.h"

namespace wand::model {

struct T5Config {
  int64_t vocab = 0;        // token_embedding rows (256384 for umT5-XXL)
  int64_t dim = 0;          // 4096
  int64_t dim_attn = 0;     // 4096
  int64_t dim_ffn = 0;      // 10240
  int64_t num_heads = 0;    // 64 (pos_embedding is [num_buckets, num_heads])
  int64_t num_layers = 0;   // 24
  int64_t num_buckets = 0;  // 32
  int64_t max_dist = 128;   // fixed in the official code
  double eps = 1e-6;

  // Derives every field from tensor names and shapes; throws kModelFormat
  // naming the source and the key on a missing or inconsistent tensor.
  static T5Config from_source(const TensorSource& src);
  int64_t head_dim() const { return dim_attn / num_heads; }
};

// The ten tensors of one block, in the run dtype on the run device.
struct T5BlockWeights {
  at::Tensor norm1, norm2;       // [dim]
  at::Tensor q, k, v;            // [dim_attn, dim]
  at::Tensor o;                  // [dim, dim_attn]
  at::Tensor fc1, gate;          // [dim_ffn, dim]
  at::Tensor fc2;                // [dim, dim_ffn]
  at::Tensor pos;                // [num_buckets, num_heads]

  static std::vector<std::string> tensor_names(int layer);  // "blocks.<i>.attn.q.weight", ...
  static T5BlockWeights from(const TensorSource& src, int layer, RunDtype run, at::Device device);
};

class T5Encoder {
 public:
  static T5Encoder load(const std::string& pth_path, RunDtype run, at::Device device,
                        bool load_blocks = true);
  static T5Encoder load(const TensorSource& src, RunDtype run, at::Device device,
                        bool load_blocks = true);

  const T5Config& config() const { return cfg_; }
  int num_layers() const { return static_cast<int>(cfg_.num_layers); }
  RunDtype run_dtype() const { return run_; }
  at::ScalarType dtype() const;  // activation dtype (float or bfloat16)

  // ids [B, L] int64, mask [B, L] (1 = valid key) -> [B, L, dim] in dtype().
  // Needs the blocks (load_blocks = true).
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& mask) const;
  // forward, then each sample trimmed to its true length sum(mask[b]):
  // {[L_b, dim]}, what the pipelines pass to the DiT as `context`.
  std::vector<at::Tensor> encode(const at::Tensor& ids, const at::Tensor& mask) const;
  // T5EncoderModel.__call__: clean_text, tokenize to text_len (512 in the
  // pipelines), encode each text as its own batch-1 call, trim.
  std::vector<at::Tensor> encode_texts(const Tokenizer& tok, const std::vector<std::string>& texts,
                                       int text_len = 512) const;

  // Stages.
  at::Tensor embed(const at::Tensor& ids) const;  // [B, L] -> [B, L, dim]
  // x [B, L, dim], mask [B, L] -> [B, L, dim]
  at::Tensor block(int layer, const at::Tensor& x, const at::Tensor& mask, const T5BlockWeights& w) const;
  at::Tensor final_norm(const at::Tensor& x) const;
  const T5BlockWeights& block_weights(int layer) const;

  // [1, num_heads, lq, lk] relative position bias of one block (before masking).
  at::Tensor position_bias(const T5BlockWeights& w, int64_t lq, int64_t lk) const;
  // [lq, lk] int64 bidirectional bucket of (key - query), official
  // T5RelativeEmbedding._relative_position_bucket.
  static at::Tensor relative_buckets(int64_t lq, int64_t lk, int64_t num_buckets = 32,
                                     int64_t max_dist = 128);

 private:
  T5Config cfg_;
  RunDtype run_ = RunDtype::kFloat32;
  at::Device device_ = at::kCPU;
  at::Tensor token_embedding_;  // [vocab, dim]
  at::Tensor norm_;             // [dim]
  std::vector<T5BlockWeights> blocks_;
};

}  // namespace wand::model
