// T5Stream: encodes prompts with the umT5 encoder while its 24 layers are streamed from its
// checkpoint (the release .pth, or a diffusers text_encoder/'s safetensors shards through
// model::open_part) through the memory pool, one layer (plus a prefetch window) at a time, so the
// text encoder never holds host-budget room beyond a small window and never sits whole on
// the card (issue 6 item 2: "the text encoder comes from disk").
//
//   T5StreamOptions o;
//   o.device_tier = pool.device_tier(0);  o.cuda_device = 0;  o.run = RunDtype::kBFloat16;
//   T5Stream t5(dir / "models_t5_umt5-xxl-enc-bf16.pth", pool, o);   // registers the blobs
//   T5Stream t5(model::open_part(layout.text_encoder()), pool, o);     // any layout
//   std::vector<at::Tensor> ctx = t5.encode_texts(tokenizer, {prompt, negative});  // umT5 read once
//   nlohmann::json s = t5.stats_json();   // bytes read, waits, seconds
//   // ~T5Stream drops its blobs (their tier copies go with them).
//
// What streams (Note [T5 stream layout] in t5_stream.cpp): each layer's ten tensors are
// file-backed blobs over the checkpoint's own bytes (TensorInfo path + offset; a
// RenamedSource keeps them) (a layer whose tensors lie back to back is one
// blob; PthWriter and torch.save's declaration order give that); on the device they are
// viewed in the stored dtype (at::from_blob, no copy) and converted to the run dtype there
// when the two differ (bf16 release -> fp32 run, fp32 -> bf16). The token embedding
// (256384 x 4096, 2.1 GB in bf16) is never loaded: embed() preads only the rows of the
// tokens it sees. The final norm is the only non-layer weight held.
//
// Numerics: block() and final_norm() are model::T5Encoder's own stages, so in fp32 the
// result equals T5Encoder::encode with resident weights bit for bit (t5_stream_test).
//
// Owns: the TensorSource (shared), a T5Encoder holding only the final norm (and a one-row
// embedding stub), its blobs in the pool (dropped by the destructor) and its counters.
// Borrows the pool (must outlive it). Threads: one thread calls encode*(); not reentrant.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "memory/blob.h"
#include "memory/completion.h"
#include "model/dit_block_weights.h"  // RunDtype
#include "model/t5_encoder.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class TensorSource;
class Tokenizer;
}  // namespace wand::model

namespace wand::sched::exec {

struct T5StreamOptions {
  std::string name = "t5";               // blob name prefix ("<name>.layer.<i>.<g>"), unique in the pool
  int device_tier = -1;                  // pool tier the layers run from (required)
  int cuda_device = -1;                  // -1: CPU compute (a CpuDeviceTier)
  model::RunDtype run = model::RunDtype::kBFloat16;
  int prefetch_layers = 1;               // layers requested ahead of the one computing
  bool evict_host = true;                // drop a layer's host copy once its device copy is ready
  bool evict_device = true;              // drop a layer's device copy once its kernels are done
  std::uint64_t max_gap_bytes = 1u << 20;  // tensors of a layer closer than this share one blob
};

struct T5StreamStats {
  std::uint64_t encodes = 0;         // forward() calls
  std::uint64_t layers_run = 0;
  std::uint64_t bytes_requested = 0;  // layer bytes requested to the device tier
  std::uint64_t embed_bytes_read = 0;  // token-embedding rows read with pread
  double wait_s = 0;                 // waited for a layer's device copy
  double max_layer_wait_s = 0;
  double encode_s = 0;               // wall time inside forward()
};

class T5Stream {
 public:
  // Checks the architecture (T5Config::from_source), registers the layer blobs over the
  // source's byte ranges. Throws wand::Error(kModelFormat) naming the file on a missing /
  // strided tensor, kConfig on options without a device tier.
  T5Stream(std::shared_ptr<const model::TensorSource> src, memory::MemoryPool& pool, T5StreamOptions options);
  // The release .pth (model::PthFile).
  T5Stream(const std::string& pth_path, memory::MemoryPool& pool, T5StreamOptions options);
  ~T5Stream();
  T5Stream(const T5Stream&) = delete;
  T5Stream& operator=(const T5Stream&) = delete;

  // ids [B, L] int64, mask [B, L] -> [B, L, dim] in the run dtype on the run device
  // (model::T5Encoder::forward with streamed layers).
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& mask);
  // forward, each sample trimmed to sum(mask[b]) (T5Encoder::encode).
  std::vector<at::Tensor> encode(const at::Tensor& ids, const at::Tensor& mask);
  // forward of several inputs in one pass over the layers: each layer is read once and run on
  // every input (Note [Layer-major encode] in t5_stream.cpp); equal to forward() on each.
  std::vector<at::Tensor> forward_each(const std::vector<at::Tensor>& ids, const std::vector<at::Tensor>& masks);
  // clean_text, tokenize to text_len, batch-1 encodes of every text in one layer pass
  // (forward_each; the results equal T5Encoder::encode_texts).
  std::vector<at::Tensor> encode_texts(const model::Tokenizer& tok, const std::vector<std::string>& texts,
                                       int text_len = 512);
  // [B, L] ids -> [B, L, dim] run dtype on the run device, from the rows read off disk.
  at::Tensor embed(const at::Tensor& ids);

  const model::T5Config& config() const { return cfg_; }  // the checkpoint's (true vocab)
  int num_layers() const { return static_cast<int>(cfg_.num_layers); }
  std::uint64_t layer_bytes(int layer) const;  // stored bytes of one layer's blobs
  std::uint64_t total_layer_bytes() const;
  std::size_t num_blobs() const;
  const T5StreamStats& stats() const { return stats_; }
  nlohmann::json stats_json() const;

 private:
  struct TensorRef {
    std::size_t group = 0;        // index into Layer::blobs
    std::uint64_t offset = 0;     // byte offset inside that blob
    at::ScalarType dtype = at::kFloat;
    std::vector<int64_t> shape;
  };
  struct Layer {
    std::vector<memory::BlobId> blobs;
    std::vector<std::uint64_t> blob_bytes;
    std::vector<TensorRef> tensors;  // T5BlockWeights::tensor_names order
  };
  void request_layer(int layer);
  void wait_prefetches() noexcept;

  memory::MemoryPool& pool_;
  T5StreamOptions opt_;
  at::Device device_;
  std::shared_ptr<const model::TensorSource> src_;
  model::T5Config cfg_;
  std::unique_ptr<model::T5Encoder> enc_;  // final norm + stages; no block weights
  std::vector<Layer> layers_;
  std::vector<memory::Completion> inflight_;  // prefetch requests of the current forward
  T5StreamStats stats_;
};

}  // namespace wand::sched::exec
