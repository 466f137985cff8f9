#include "scheduler/exec/t5_stream.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/pth.h"
#include "model/text_clean.h"
#include "model/tokenizer.h"
#include "scheduler/exec/device_runtime.h"

namespace wand::sched::exec {

// Note [T5 stream layout]
// The tensors are grouped per file (a diffusers text_encoder/ has several shards, and a layer
// may straddle two of them); within a file as follows. A .pth stores every tensor as its own zip entry data/<key> (64-byte aligned, a local zip
// header in between). PthWriter (wand-make-model) and torch.save write the entries in the
// state dict's order, so a layer's ten tensors usually lie back to back with only headers
// between them; the release file written by torch.save orders entries by storage key, which
// may scatter them. So the tensors of a layer are sorted by offset and cut into groups
// wherever the gap to the next exceeds max_gap_bytes (1 MiB): each group is one file-backed
// blob over [first byte, last byte) (a few hundred bytes of headers travel with it), and each
// tensor is a view at its offset inside its group. Back to back: one blob per layer (a
// ~385 MB bf16 umT5-XXL layer); scattered: up to ten. Either way every byte read is the
// layer's own (plus headers), never the token embedding's.
//
// Note [T5 stream embedding]
// T5Encoder::load always loads token_embedding.weight (2.1 GB in bf16, 4.2 GB in fp32 for
// umT5-XXL): too much to pass through a 32 GB host budget beside an expert for a lookup
// of at most 512 rows. The encoder is therefore loaded through EmbedlessSource, which
// reports the embedding as its first row only ([1, dim]; T5Encoder::embed is never called),
// and T5Stream::embed preads the rows of the distinct token ids and gathers them with
// at::embedding: a gather copies rows, and the dtype conversion is elementwise, so the
// result equals at::embedding(table.to(dtype), ids) bit for bit. (A T5Encoder::load option
// without the embedding would make the wrapper unnecessary; model/ is not this file's.)

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const char* const kEmbedding = "token_embedding.weight";

at::ScalarType run_scalar(model::RunDtype run) {
  switch (run) {
    case model::RunDtype::kFloat32: return at::kFloat;
    case model::RunDtype::kBFloat16: return at::kBFloat16;
    default:
      throw Error(ErrorCode::kConfig, std::string("t5 stream: umT5 runs in fp32 or bf16, not ") +
                                          model::run_dtype_name(run));
  }
}

// A .pth may hold a strided tensor (a view saved as such); safetensors never does.
bool contiguous(const model::TensorSource& src, const std::string& name) {
  const auto* pth = dynamic_cast<const model::PthFile*>(&src);
  return pth == nullptr || pth->is_contiguous(name);
}

// The source with token_embedding.weight cut to its first row (Note [T5 stream embedding]).
class EmbedlessSource : public model::TensorSource {
 public:
  explicit EmbedlessSource(const model::TensorSource& f) : f_(f) {
    row_ = f.info(kEmbedding);
    if (row_.shape.size() != 2 || !contiguous(f, kEmbedding)) {
      throw Error(ErrorCode::kModelFormat, f.describe() + ": " + kEmbedding + " is not a contiguous 2-D tensor");
    }
    row_.shape[0] = 1;
    row_.nbytes = static_cast<std::uint64_t>(row_.shape[1]) * model::dtype_size(row_.dtype);
  }
  std::vector<std::string> names() const override { return f_.names(); }
  bool contains(const std::string& name) const override { return f_.contains(name); }
  const model::TensorInfo& info(const std::string& name) const override {
    return name == kEmbedding ? row_ : f_.info(name);
  }
  at::Tensor load(const std::string& name, c10::optional<at::ScalarType> dtype) const override {
    if (name != kEmbedding) return f_.load(name, dtype);
    at::Tensor t = at::empty(row_.shape, at::TensorOptions().dtype(row_.dtype));
    model::read_exact(row_.path, row_.offset, t.data_ptr(), row_.nbytes);
    return dtype ? t.to(*dtype) : t;
  }
  std::string describe() const override { return f_.describe(); }

 private:
  const model::TensorSource& f_;
  model::TensorInfo row_;
};

}  // namespace

T5Stream::T5Stream(const std::string& pth_path, memory::MemoryPool& pool, T5StreamOptions options)
    : T5Stream(std::make_shared<model::PthFile>(pth_path), pool, std::move(options)) {}

T5Stream::T5Stream(std::shared_ptr<const model::TensorSource> src, memory::MemoryPool& pool, T5StreamOptions options)
    : pool_(pool),
      opt_(std::move(options)),
      device_(opt_.cuda_device >= 0 ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(opt_.cuda_device))
                                    : at::Device(at::kCPU)) {
  if (!src) throw Error(ErrorCode::kConfig, "t5 stream: no checkpoint given");
  src_ = std::move(src);
  const std::string where = src_->describe();
  if (opt_.device_tier < 0) throw Error(ErrorCode::kConfig, "t5 stream: no device tier given for " + where);
  if (opt_.prefetch_layers < 0) throw Error(ErrorCode::kConfig, "t5 stream: prefetch_layers must be >= 0");
  run_scalar(opt_.run);
  cfg_ = model::T5Config::from_source(*src_);
  {
    EmbedlessSource es(*src_);
    enc_ = std::make_unique<model::T5Encoder>(model::T5Encoder::load(es, opt_.run, device_, /*load_blocks=*/false));
  }
  std::vector<memory::BlobId> registered;  // dropped again if the constructor fails
  try {
    for (int l = 0; l < num_layers(); ++l) {
      const std::vector<std::string> names = model::T5BlockWeights::tensor_names(l);
      std::vector<const model::TensorInfo*> infos;
      for (const std::string& n : names) {
        if (!contiguous(*src_, n)) {
          throw Error(ErrorCode::kModelFormat, where + ": umT5 tensor '" + n + "' is strided; cannot stream it");
        }
        infos.push_back(&src_->info(n));
      }
      std::vector<std::size_t> order(names.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (infos[a]->path != infos[b]->path) return infos[a]->path < infos[b]->path;
        return infos[a]->offset < infos[b]->offset;
      });
      Layer layer;
      layer.tensors.resize(names.size());
      std::uint64_t start = 0, end = 0;
      std::string path;
      std::vector<std::size_t> members;
      auto close_group = [&]() {
        const std::size_t g = layer.blobs.size();
        const std::string blob = opt_.name + ".layer." + std::to_string(l) + "." + std::to_string(g);
        layer.blobs.push_back(pool_.register_file_blob(blob, path, start, end - start));
        registered.push_back(layer.blobs.back());
        layer.blob_bytes.push_back(end - start);
        for (std::size_t k : members) {
          layer.tensors[k] = TensorRef{g, infos[k]->offset - start, infos[k]->dtype, infos[k]->shape};
        }
        members.clear();
      };
      for (std::size_t k : order) {
        const model::TensorInfo& ti = *infos[k];
        if (!members.empty() && (ti.path != path || ti.offset > end + opt_.max_gap_bytes)) close_group();
        if (members.empty()) {
          start = ti.offset;
          end = 0;
          path = ti.path;
        }
        members.push_back(k);
        end = std::max(end, ti.offset + ti.nbytes);
      }
      close_group();
      layers_.push_back(std::move(layer));
    }
  } catch (...) {
    for (memory::BlobId b : registered) pool_.drop_blob(b);
    throw;
  }
  log::get("sched")->info("t5 stream {}: {} layers in {} blobs, {} bytes, run {} on {}", where, num_layers(),
                          num_blobs(), total_layer_bytes(), model::run_dtype_name(opt_.run), device_.str());
}

T5Stream::~T5Stream() {
  wait_prefetches();
  for (const Layer& layer : layers_) {
    for (memory::BlobId b : layer.blobs) {
      try {
        pool_.drop_blob(b);
      } catch (const std::exception& e) {
        log::get("sched")->warn("t5 stream: could not drop blob {}: {}", b, e.what());
      }
    }
  }
}

void T5Stream::wait_prefetches() noexcept {
  for (memory::Completion& c : inflight_) {
    try {
      if (c.valid()) c.wait();
    } catch (...) {
      // A failed prefetch is reported by the acquire that needs it (or nobody needs it).
    }
  }
  inflight_.clear();
}

std::uint64_t T5Stream::layer_bytes(int layer) const {
  const Layer& l = layers_.at(static_cast<std::size_t>(layer));
  return std::accumulate(l.blob_bytes.begin(), l.blob_bytes.end(), std::uint64_t{0});
}

std::uint64_t T5Stream::total_layer_bytes() const {
  std::uint64_t n = 0;
  for (int l = 0; l < num_layers(); ++l) n += layer_bytes(l);
  return n;
}

std::size_t T5Stream::num_blobs() const {
  std::size_t n = 0;
  for (const Layer& l : layers_) n += l.blobs.size();
  return n;
}

void T5Stream::request_layer(int layer) {
  const Layer& l = layers_[static_cast<std::size_t>(layer)];
  for (std::size_t g = 0; g < l.blobs.size(); ++g) {
    if (pool_.state(l.blobs[g], opt_.device_tier) != memory::CopyState::kAbsent) continue;
    inflight_.push_back(pool_.request(l.blobs[g], opt_.device_tier));
    stats_.bytes_requested += l.blob_bytes[g];
  }
}

at::Tensor T5Stream::embed(const at::Tensor& ids_in) {
  if (ids_in.dim() != 2) throw Error(ErrorCode::kBadRequest, "t5 stream: ids must be [B, L]");
  const at::Tensor ids = ids_in.to(at::kCPU, at::kLong).contiguous();
  const model::TensorInfo& table = src_->info(kEmbedding);
  const std::uint64_t row_bytes = static_cast<std::uint64_t>(cfg_.dim) * model::dtype_size(table.dtype);
  // Distinct ids -> rows of a small table, read with one pread each.
  std::map<int64_t, int64_t> slot;
  const int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i) {
    if (p[i] < 0 || p[i] >= cfg_.vocab) {
      throw Error(ErrorCode::kBadRequest, "t5 stream: token id " + std::to_string(p[i]) +
                                              " outside the vocabulary of " + std::to_string(cfg_.vocab));
    }
    slot.emplace(p[i], 0);
  }
  at::Tensor rows = at::empty({static_cast<int64_t>(slot.size()), cfg_.dim}, at::TensorOptions().dtype(table.dtype));
  auto* dst = static_cast<std::byte*>(rows.data_ptr());
  int64_t next = 0;
  for (auto& [id, s] : slot) {
    s = next;
    model::read_exact(table.path, table.offset + static_cast<std::uint64_t>(id) * row_bytes,
                      dst + static_cast<std::uint64_t>(next) * row_bytes, row_bytes);
    ++next;
  }
  stats_.embed_bytes_read += static_cast<std::uint64_t>(next) * row_bytes;
  at::Tensor local = at::empty_like(ids);
  int64_t* q = local.data_ptr<int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i) q[i] = slot[p[i]];
  const at::ScalarType dt = run_scalar(opt_.run);
  return at::embedding(rows.to(dt).to(device_), local.to(device_));  // [B, L, dim]
}

at::Tensor T5Stream::forward(const at::Tensor& ids, const at::Tensor& mask) {
  return forward_each({ids}, {mask})[0];
}

std::vector<at::Tensor> T5Stream::forward_each(const std::vector<at::Tensor>& ids, const std::vector<at::Tensor>& masks) {
  if (ids.empty() || ids.size() != masks.size()) {
    throw Error(ErrorCode::kBadRequest, "t5 stream: " + std::to_string(ids.size()) + " id tensors and " +
                                            std::to_string(masks.size()) + " masks");
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (masks[i].sizes() != ids[i].sizes()) throw Error(ErrorCode::kBadRequest, "t5 stream: ids and mask shapes differ");
  }
  const auto t0 = Clock::now();
  const at::ScalarType dt = run_scalar(opt_.run);
  const int host = pool_.host_tier();
  try {
    // Layer 0's read overlaps the embedding gather.
    for (int l = 0; l <= std::min(opt_.prefetch_layers, num_layers() - 1); ++l) request_layer(l);
    std::vector<at::Tensor> xs;
    for (const at::Tensor& i : ids) xs.push_back(embed(i));
    for (int l = 0; l < num_layers(); ++l) {
      const int ahead = l + opt_.prefetch_layers;
      if (ahead < num_layers() && ahead > 0) request_layer(ahead);
      const Layer& layer = layers_[static_cast<std::size_t>(l)];
      std::vector<memory::PinnedCopy> pins;
      memory::RequestOptions ro;
      ro.urgent = true;
      const auto w0 = Clock::now();
      for (memory::BlobId b : layer.blobs) pins.push_back(pool_.acquire(b, opt_.device_tier, ro));
      const double w = since(w0);
      stats_.wait_s += w;
      stats_.max_layer_wait_s = std::max(stats_.max_layer_wait_s, w);
      if (opt_.evict_host && opt_.device_tier != host) {
        for (memory::BlobId b : layer.blobs) {
          try {
            pool_.evict(b, host);
          } catch (const Error&) {
            // Still transfer-pinned (the H2D has just finished): LRU evicts it later.
          }
        }
      }
      std::vector<at::Tensor> v;
      for (const TensorRef& t : layer.tensors) {
        at::Tensor view = at::from_blob(pins[t.group].data() + t.offset, t.shape,
                                        at::TensorOptions().dtype(t.dtype).device(device_));
        v.push_back(t.dtype == dt ? view : view.to(dt));
      }
      model::T5BlockWeights bw;  // tensor_names order: norm1 q k v o norm2 fc1 gate fc2 pos
      bw.norm1 = v[0];
      bw.q = v[1];
      bw.k = v[2];
      bw.v = v[3];
      bw.o = v[4];
      bw.norm2 = v[5];
      bw.fc1 = v[6];
      bw.gate = v[7];
      bw.fc2 = v[8];
      bw.pos = v[9];
      // Note [Layer-major encode]: every input goes through layer l while its weights are on
      // the device, so a job's prompt and negative prompt read umT5 from disk once, not twice
      // (measured on the H100 before: 18.5 GB of T5 reads per job for a 9.3 GB stack). Each
      // input runs the same ops as alone: the outputs are bitwise those of one-at-a-time.
      for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = enc_->block(l, xs[i], masks[i], bw);
      // Note: the views die with bw / v at the end of this iteration; the kernels reading them
      // must be finished before the pins go (the copy may be evicted and its slot reused).
      ComputeFence::record(opt_.cuda_device).wait();
      bw = {};
      v.clear();
      pins.clear();
      if (opt_.evict_device) {
        for (memory::BlobId b : layer.blobs) {
          try {
            pool_.evict(b, opt_.device_tier);
          } catch (const Error&) {
          }
        }
      }
      ++stats_.layers_run;
    }
    std::vector<at::Tensor> out;
    for (const at::Tensor& x : xs) out.push_back(enc_->final_norm(x));
    synchronize_device(opt_.cuda_device);
    inflight_.clear();
    ++stats_.encodes;
    stats_.encode_s += since(t0);
    return out;
  } catch (...) {
    synchronize_device(opt_.cuda_device);
    wait_prefetches();
    throw;
  }
}

std::vector<at::Tensor> T5Stream::encode(const at::Tensor& ids, const at::Tensor& mask) {
  at::Tensor out = forward(ids, mask);
  at::Tensor lens = mask.gt(0).sum(1).to(at::kCPU, at::kLong);
  std::vector<at::Tensor> res;
  for (int64_t b = 0; b < out.size(0); ++b) res.push_back(out[b].narrow(0, 0, lens[b].item<int64_t>()));
  return res;
}

std::vector<at::Tensor> T5Stream::encode_texts(const model::Tokenizer& tok, const std::vector<std::string>& texts,
                                               int text_len) {
  std::vector<at::Tensor> ids, masks;
  for (const std::string& text : texts) {
    const model::TokenizedText t = tok.encode(model::clean_text(text), text_len);
    ids.push_back(at::tensor(t.ids, at::kLong).view({1, text_len}));
    masks.push_back(at::tensor(t.mask, at::kLong).view({1, text_len}).to(device_));
  }
  if (ids.empty()) return {};
  const std::vector<at::Tensor> enc = forward_each(ids, masks);  // Note [Layer-major encode]
  std::vector<at::Tensor> out;
  for (std::size_t i = 0; i < enc.size(); ++i) {
    const int64_t len = masks[i].gt(0).sum().item<int64_t>();
    out.push_back(enc[i][0].narrow(0, 0, len));
  }
  return out;
}

nlohmann::json T5Stream::stats_json() const {
  return {{"layers", num_layers()},
          {"blobs", num_blobs()},
          {"layer_bytes_total", total_layer_bytes()},
          {"run_dtype", model::run_dtype_name(opt_.run)},
          {"encodes", stats_.encodes},
          {"layers_run", stats_.layers_run},
          {"bytes_requested", stats_.bytes_requested},
          {"embed_bytes_read", stats_.embed_bytes_read},
          {"wait_s", stats_.wait_s},
          {"max_layer_wait_s", stats_.max_layer_wait_s},
          {"encode_s", stats_.encode_s}};
}

}  // namespace wand::sched::exec
