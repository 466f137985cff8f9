#include "scheduler/exec/weight_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/fp8.h"
#include "scheduler/exec/fingerprint.h"

namespace wand::sched::exec {

namespace fs = std::filesystem;

namespace {

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

std::string manifest_path(const std::string& packed) { return packed + ".json"; }

// Note [fp8 stored dtype]: the one decision, on the checkpoint's tensor.
bool stored_fp8(const model::CheckpointDir& ck, const std::string& name, model::WeightsDtype w) {
  const model::TensorInfo& ti = ck.info(name);
  const std::string file_dtype = ti.fp8 ? std::string("F8_E4M3") : model::safetensors_dtype_name(ti.dtype);
  return model::block_tensor_storage(name, ti.shape.size(), file_dtype, w) == model::StoredAs::kFp8;
}

// Note [Weight store paths]: a block goes direct when every one of its tensors is stored
// in the run's GEMM dtype, all in one shard, back to back (offset_k + nbytes_k ==
// offset_{k+1} once sorted by offset) and each offset a multiple of its element size (the
// copy keeps the file's alignment modulo 4 KiB, so views stay aligned). Release shards
// written by save_pretrained satisfy this except for a block that straddles two shards;
// such blocks (or every block of an fp32 release for a bf16 run) are packed: only they
// go into the packed file, the others stay direct.
std::optional<BlockBlob> direct_block(const model::CheckpointDir& ck, std::int64_t i, at::ScalarType g,
                                      model::WeightsDtype w) {
  BlockBlob b;
  std::vector<const model::TensorInfo*> infos;
  for (const std::string& n : model::DitBlockWeights::tensor_names(i)) {
    // fp8 blocks are packed (codes + scales); so is a tensor with a scale beside it.
    if (stored_fp8(ck, n, w) || ck.has_scale(n)) return std::nullopt;
    infos.push_back(&ck.info(n));
  }
  for (const auto* ti : infos) {
    if (ti->dtype != g) return std::nullopt;
    if (ti->path != infos[0]->path) return std::nullopt;
    if (ti->offset % model::dtype_size(ti->dtype) != 0) return std::nullopt;
  }
  std::vector<const model::TensorInfo*> sorted = infos;
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* c) { return a->offset < c->offset; });
  for (std::size_t k = 1; k < sorted.size(); ++k) {
    if (sorted[k - 1]->offset + sorted[k - 1]->nbytes != sorted[k]->offset) return std::nullopt;
  }
  b.path = sorted.front()->path;
  b.file_offset = sorted.front()->offset;
  b.bytes = sorted.back()->offset + sorted.back()->nbytes - b.file_offset;
  for (const auto* ti : infos) {
    b.tensors.push_back(BlockTensor{ti->name, ti->offset - b.file_offset, ti->dtype, ti->shape, ti->nbytes});
  }
  return b;
}

// The packed layout of the given blocks (offsets only; no I/O).
std::vector<BlockBlob> packed_layout(const model::CheckpointDir& ck, const std::vector<std::int64_t>& which,
                                     at::ScalarType g, const std::string& path, const WeightStoreOptions& o) {
  std::vector<BlockBlob> blocks;
  std::uint64_t file_off = 0;
  for (std::int64_t i : which) {
    BlockBlob b;
    b.path = path;
    b.file_offset = file_off;
    std::uint64_t off = 0;
    for (const std::string& n : model::DitBlockWeights::tensor_names(i)) {
      const model::TensorInfo& ti = ck.info(n);
      if (stored_fp8(ck, n, o.weights)) {
        // codes, then the fp32 scales: the file's (read straight) or one a row / one per
        // tensor for a tensor wand quantizes (Note [fp8 scale granularity]).
        BlockTensor t{n, round_up(off, WeightStore::kTensorAlign), at::kByte, ti.shape,
                      static_cast<std::uint64_t>(ti.numel())};
        t.fp8 = true;
        t.dequant_to = g;
        if (ti.fp8) {
          t.scale_shape = ck.load_scale(n).sizes().vec();
        } else if (o.fp8_scaling == model::Fp8Scaling::kRow) {
          t.scale_shape = {ti.shape[0], 1};
        }
        std::uint64_t scale_n = 1;
        for (auto d : t.scale_shape) scale_n *= static_cast<std::uint64_t>(d);
        t.scale_offset = round_up(t.offset + t.nbytes, WeightStore::kTensorAlign);
        off = t.scale_offset + scale_n * sizeof(float);
        b.tensors.push_back(std::move(t));
        continue;
      }
      const std::uint64_t nb = static_cast<std::uint64_t>(ti.numel()) * model::dtype_size(g);
      off = round_up(off, WeightStore::kTensorAlign);
      b.tensors.push_back(BlockTensor{n, off, g, ti.shape, nb});
      off += nb;
    }
    b.bytes = round_up(off, WeightStore::kBlockAlign);
    file_off += b.bytes;
    blocks.push_back(std::move(b));
  }
  return blocks;
}

nlohmann::json layout_json(const std::vector<std::int64_t>& which, const std::vector<BlockBlob>& blocks) {
  nlohmann::json arr = nlohmann::json::array();
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    const BlockBlob& b = blocks[k];
    nlohmann::json t = nlohmann::json::array();
    for (const auto& x : b.tensors) {
      t.push_back({{"name", x.name}, {"offset", x.offset},
                   {"dtype", x.fp8 ? std::string("F8_E4M3") : model::safetensors_dtype_name(x.dtype)},
                   {"shape", x.shape}, {"nbytes", x.nbytes}});
      if (x.fp8) {
        t.back()["scale_offset"] = x.scale_offset;
        t.back()["scale_shape"] = x.scale_shape;
      }
    }
    arr.push_back({{"block", which[k]}, {"offset", b.file_offset}, {"bytes", b.bytes}, {"tensors", t}});
  }
  return arr;
}

void write_all(int fd, const void* data, std::uint64_t n, std::uint64_t off, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, "weight store: write to " + path + " at offset " + std::to_string(off) +
                                      " failed: " + std::strerror(errno));
    }
    p += w;
    off += static_cast<std::uint64_t>(w);
    n -= static_cast<std::uint64_t>(w);
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorCode::kIo, "weight store: cannot create " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, text.data(), text.size(), 0, tmp);
    if (::fsync(fd) != 0) throw Error(ErrorCode::kIo, "weight store: fsync " + tmp + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Error(ErrorCode::kIo, "weight store: rename " + tmp + " -> " + path + ": " + std::strerror(errno));
  }
}

// Converts every block into the packed file (tmp + rename), one block in memory at a time.
void write_pack(const model::CheckpointDir& ck, const std::vector<BlockBlob>& blocks, const std::string& path,
                const WeightStoreOptions& o) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorCode::kIo, "weight store: cannot create " + tmp + ": " + std::strerror(errno));
  try {
    std::vector<char> buf;
    for (const BlockBlob& b : blocks) {
      buf.assign(b.bytes, 0);
      for (const BlockTensor& t : b.tensors) {
        if (t.fp8) {
          model::Fp8Tensor q;
          if (ck.info(t.name).fp8) {  // read straight: the file's codes and scale
            q.codes = ck.load_stored(t.name);
            q.scale = ck.load_scale(t.name);
          } else {
            q = model::quantize_fp8_e4m3fn(ck.load(t.name), o.fp8_scaling);
          }
          q.scale = q.scale.to(at::kFloat).contiguous();
          WAND_ASSERT(static_cast<std::uint64_t>(q.codes.numel()) == t.nbytes && q.scale.sizes().vec() == t.scale_shape,
                      "weight store: fp8 layout of " + t.name);
          std::memcpy(buf.data() + t.offset, q.codes.contiguous().data_ptr(), t.nbytes);
          std::memcpy(buf.data() + t.scale_offset, q.scale.data_ptr(), q.scale.numel() * sizeof(float));
          continue;
        }
        at::Tensor x = ck.load(t.name, t.dtype).contiguous();
        WAND_ASSERT(static_cast<std::uint64_t>(x.numel()) * x.element_size() == t.nbytes, "weight store: size of " + t.name);
        std::memcpy(buf.data() + t.offset, x.data_ptr(), t.nbytes);
      }
      write_all(fd, buf.data(), b.bytes, b.file_offset, tmp);
    }
    if (::fsync(fd) != 0) throw Error(ErrorCode::kIo, "weight store: fsync " + tmp + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Error(ErrorCode::kIo, "weight store: rename " + tmp + " -> " + path + ": " + std::strerror(errno));
  }
}

std::uint64_t file_size_or_zero(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace

std::string WeightStore::storage_tag(const WeightStoreOptions& o) {
  switch (o.weights) {
    case model::WeightsDtype::kAuto: return "";
    case model::WeightsDtype::kRun: return "run";
    case model::WeightsDtype::kFp8: return std::string("fp8-") + model::fp8_scaling_name(o.fp8_scaling);
  }
  return "";
}

std::string WeightStore::pack_path(const std::string& pack_dir, const model::CheckpointDir& ck, model::RunDtype run,
                                   const std::string& storage) {
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(ck.dir(), ec);
  const std::string key_src = (ec ? ck.dir().string() : canon.string()) + "|" + model::run_dtype_name(run) +
                              (storage.empty() ? "" : "|" + storage);
  return (fs::path(pack_dir) / ("wand-pack-" + hex64(fnv1a64(key_src.data(), key_src.size())) + ".bin")).string();
}

WeightStore WeightStore::open(const model::CheckpointDir& ck, memory::MemoryPool& pool, const WeightStoreOptions& o) {
  auto log = log::get("sched");
  WeightStore ws;
  ws.pool_ = &pool;
  ws.name_ = o.name;
  ws.run_ = o.run;
  const std::int64_t layers = ck.config().num_layers;
  const at::ScalarType g = model::gemm_dtype(o.run);

  // Per block: direct over the shard when possible, else packed.
  ws.blocks_.resize(static_cast<std::size_t>(layers));
  std::vector<std::int64_t> to_pack;
  for (std::int64_t i = 0; i < layers; ++i) {
    std::optional<BlockBlob> d = o.force_pack ? std::nullopt : direct_block(ck, i, g, o.weights);
    if (d) {
      ws.blocks_[static_cast<std::size_t>(i)] = std::move(*d);
    } else {
      to_pack.push_back(i);
    }
  }
  ws.packed_count_ = static_cast<std::int64_t>(to_pack.size());
  ws.direct_ = to_pack.empty();
  if (to_pack.empty()) {
    ws.register_blobs();
    log->info("weight store direct name={} blocks={} bytes={} dir={}", o.name, layers,
              format_bytes(ws.total_bytes()), ck.dir().string());
    return ws;
  }
  if (o.pack_dir.empty()) {
    throw Error(ErrorCode::kConfig, "weight store: " + ck.dir().string() + " needs a repack of " +
                                        std::to_string(to_pack.size()) + " of " + std::to_string(layers) +
                                        " blocks to " + model::run_dtype_name(o.run) +
                                        " but no pack directory is configured");
  }
  std::error_code ec;
  fs::create_directories(o.pack_dir, ec);
  if (ec) throw Error(ErrorCode::kIo, "weight store: cannot create pack dir " + o.pack_dir + ": " + ec.message());

  const std::string storage = storage_tag(o);
  ws.packed_path_ = pack_path(o.pack_dir, ck, o.run, storage);
  const std::vector<BlockBlob> packed = packed_layout(ck, to_pack, g, ws.packed_path_, o);
  std::uint64_t want_bytes = 0;
  for (const BlockBlob& b : packed) want_bytes += b.bytes;
  const nlohmann::json layout = layout_json(to_pack, packed);
  const std::string tag = std::string("wand-pack v") + std::to_string(kPackVersion) + " " + model::run_dtype_name(o.run) +
                          (storage.empty() ? "" : " " + storage);
  const std::string fp = checkpoint_fingerprint(ck.shard_paths(), tag);
  const std::string mpath = manifest_path(ws.packed_path_);

  bool reuse = false;
  std::string reason = "no manifest";
  {
    std::ifstream in(mpath);
    if (in) {
      nlohmann::json m;
      try {
        in >> m;
        if (m.value("fingerprint", std::string()) != fp) {
          reason = "checkpoint changed";
        } else if (m.value("version", 0) != kPackVersion || m.value("file_bytes", std::uint64_t{0}) != want_bytes ||
                   m.value("blocks", nlohmann::json::array()) != layout) {
          reason = "layout changed";
        } else {
          reuse = true;
        }
      } catch (const nlohmann::json::exception& e) {
        reason = std::string("unreadable manifest (") + e.what() + ")";
      }
    }
  }
  if (reuse) {
    const std::uint64_t have = file_size_or_zero(ws.packed_path_);
    if (have < want_bytes) {
      throw Error(ErrorCode::kIo, "weight store: packed file " + ws.packed_path_ + " is truncated: " +
                                      std::to_string(have) + " bytes, its manifest " + mpath + " expects " +
                                      std::to_string(want_bytes) + " (delete both to repack)");
    }
    log->info("weight store reuse name={} packed_blocks={} of={} bytes={} path={}", o.name, to_pack.size(), layers,
              format_bytes(want_bytes), ws.packed_path_);
  } else {
    log->info("weight store repack name={} reason=\"{}\" packed_blocks={} of={} bytes={} dtype={} path={}", o.name,
              reason, to_pack.size(), layers, format_bytes(want_bytes), model::run_dtype_name(o.run), ws.packed_path_);
    ::unlink(mpath.c_str());  // a crash mid-repack leaves no manifest: the next open repacks
    write_pack(ck, packed, ws.packed_path_, o);
    nlohmann::json m = {{"version", kPackVersion},
                        {"fingerprint", fp},
                        {"checkpoint", ck.dir().string()},
                        {"shards", ck.shard_paths()},
                        {"run_dtype", model::run_dtype_name(o.run)},
                        {"weights", storage.empty() ? std::string("auto") : storage},
                        {"file_bytes", want_bytes},
                        {"blocks", layout}};
    write_text_atomic(mpath, m.dump(1));
    ws.repacked_now_ = true;
  }
  for (std::size_t k = 0; k < to_pack.size(); ++k) ws.blocks_[static_cast<std::size_t>(to_pack[k])] = packed[k];
  ws.register_blobs();
  return ws;
}

void WeightStore::register_blobs() {
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    BlockBlob& b = blocks_[i];
    b.blob_name = name_ + ".block." + std::to_string(i);
    b.id = pool_->register_file_blob(b.blob_name, b.path, b.file_offset, b.bytes);
  }
}

WeightStore::WeightStore(WeightStore&& other) noexcept
    : pool_(other.pool_),
      name_(std::move(other.name_)),
      run_(other.run_),
      direct_(other.direct_),
      packed_count_(other.packed_count_),
      repacked_now_(other.repacked_now_),
      packed_path_(std::move(other.packed_path_)),
      blocks_(std::move(other.blocks_)) {
  other.pool_ = nullptr;
  other.blocks_.clear();
}

WeightStore::~WeightStore() {
  if (pool_ == nullptr) return;
  for (const BlockBlob& b : blocks_) {
    if (b.blob_name.empty()) continue;
    try {
      pool_->drop_blob(b.id);
    } catch (const std::exception& e) {
      log::get("sched")->warn("weight store drop blob={} error=\"{}\"", b.blob_name, e.what());
    }
  }
}

const BlockBlob& WeightStore::block(std::int64_t i) const {
  if (i < 0 || i >= num_blocks()) {
    throw Error(ErrorCode::kBadRequest, "weight store " + name_ + ": block " + std::to_string(i) + " out of range (" +
                                            std::to_string(num_blocks()) + " blocks)");
  }
  return blocks_[static_cast<std::size_t>(i)];
}

std::uint64_t WeightStore::max_block_bytes() const {
  std::uint64_t m = 0;
  for (const auto& b : blocks_) m = std::max(m, b.bytes);
  return m;
}

std::uint64_t WeightStore::max_block_dequant_bytes() const {
  std::uint64_t m = 0;
  for (const auto& b : blocks_) {
    std::uint64_t n = 0;
    for (const auto& t : b.tensors) {
      if (t.fp8) n += t.nbytes * model::dtype_size(t.dequant_to);
    }
    m = std::max(m, n);
  }
  return m;
}

std::int64_t WeightStore::fp8_tensors() const {
  std::int64_t n = 0;
  for (const auto& b : blocks_) {
    for (const auto& t : b.tensors) n += t.fp8 ? 1 : 0;
  }
  return n;
}

std::uint64_t WeightStore::total_bytes() const {
  std::uint64_t n = 0;
  for (const auto& b : blocks_) n += b.bytes;
  return n;
}

nlohmann::json WeightStore::status_json() const {
  return {{"name", name_},
          {"mode", direct_ ? "direct" : (packed_count_ == num_blocks() ? "packed" : "mixed")},
          {"packed_blocks", packed_count_},
          {"run_dtype", model::run_dtype_name(run_)},
          {"blocks", blocks_.size()},
          {"bytes", total_bytes()},
          {"max_block_bytes", max_block_bytes()},
          {"fp8_tensors", fp8_tensors()},
          {"packed_path", packed_path_}};
}

model::DitBlockWeights view_block_weights(const BlockBlob& b, std::byte* data, at::Device device) {
  WAND_ASSERT(data != nullptr, "view_block_weights: no data for " + b.blob_name);
  model::DitBlockWeights w;
  std::vector<at::Tensor*> f = w.fields();
  if (f.size() != b.tensors.size()) {
    throw Error(ErrorCode::kInternal, "weight store: blob " + b.blob_name + " has " + std::to_string(b.tensors.size()) +
                                          " tensors, a block has " + std::to_string(f.size()));
  }
  for (std::size_t k = 0; k < f.size(); ++k) {
    const BlockTensor& t = b.tensors[k];
    *f[k] = at::from_blob(data + t.offset, t.shape, at::TensorOptions().dtype(t.dtype).device(device));
    if (t.fp8) {
      // Dequantized on the blob's device right after the transfer (Note [fp8 dequantization]):
      // kernels on the current stream, before the streamer's fence, so the slot stays pinned
      // while they read it; the result lives as long as the body holds the weights.
      const at::Tensor scale =
          at::from_blob(data + t.scale_offset, t.scale_shape, at::TensorOptions().dtype(at::kFloat).device(device));
      *f[k] = model::fp8_dequantize(*f[k], scale, t.dequant_to);
    }
  }
  return w;
}

void reserve_block_slots(memory::MemoryPool& pool, int tier, const std::vector<const WeightStore*>& stores) {
  std::uint64_t q = 0;
  for (const WeightStore* st : stores) {
    for (std::int64_t i = 0; i < st->num_blocks(); ++i) q = std::max(q, pool.copy_bytes(st->block(i).id, tier));
  }
  memory::Tier& t = pool.tier(tier);
  t.set_quantum(std::max(t.quantum(), q));
}

void check_expert_schedule(const std::vector<int>& expert_of_step, std::size_t experts, const std::string& who) {
  for (std::size_t k = 0; k < expert_of_step.size(); ++k) {
    const int e = expert_of_step[k];
    if (e < 0 || static_cast<std::size_t>(e) >= experts) {
      throw Error(ErrorCode::kBadRequest, who + ": step " + std::to_string(k) + " names expert " + std::to_string(e) +
                                              " of " + std::to_string(experts));
    }
  }
}

}  // namespace wand::sched::exec
