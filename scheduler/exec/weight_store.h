// WeightStore: the DiT blocks of one expert as per-block blobs in the memory pool, in the
// run dtype, ready to be streamed to a device tier.
//
//   CheckpointDir ck("Wan2.2-T2V-A14B/high_noise_model");
//   WeightStoreOptions o;  o.run = RunDtype::kBFloat16;  o.name = "hi";
//   o.pack_dir = "/var/lib/wand/spool";                   // the disk tier's directory
//   WeightStore ws = WeightStore::open(ck, pool, o);      // repacks once if needed
//   const BlockBlob& b = ws.block(3);                      // pool blob "hi.block.3"
//   PinnedCopy c = pool.acquire(b.id, pool.device_tier(0));
//   DitBlockWeights w = view_block_weights(b, c.data(), at::Device(at::kCUDA, 0));
//   x = dit.block(3, x, inputs, w);                        // views into the copy
//
// Two paths, chosen per block (Note [Weight store paths]):
// - direct: the stored dtype equals the run's GEMM dtype and the block's 27 tensors are
//   contiguous in one shard (the release layout): one file-backed blob per block over the
//   shard's byte range, no second copy on disk;
// - packed: otherwise (an fp32 release for a bf16 run: every block; a bf16 release: the
//   few blocks that straddle two shards) the blocks are converted once into `<pack_dir>/wand-pack-<key>.bin`
//   (each block 4 KiB aligned, tensors 256-byte aligned inside it, run dtype) with a JSON
//   manifest beside it carrying the checkpoint fingerprint (shard paths, sizes, mtimes,
//   header hashes; scheduler/exec/fingerprint.h). A matching manifest is reused across
//   restarts; a different fingerprint repacks; a packed file shorter than its manifest says
//   throws wand::Error(kIo) naming both sizes.
// fp8 (Note [fp8 stored dtype], model/weight_storage.h): with WeightStoreOptions::weights
// the large linear weights of a block are held as fp8_e4m3fn codes (1 byte a weight) with
// their fp32 scales after them in the blob, so the host tier and the transfers carry fp8;
// view_block_weights dequantizes them on the blob's device right after the transfer
// (model/fp8.h, Note [fp8 dequantization]). Such blocks are always packed: the codes of an
// fp8 file are copied as they are (with their scales), a bf16/fp32 checkpoint is quantized
// once (Note [fp8 scale granularity]). The stored dtype is part of the pack's identity (its
// file name and fingerprint: storage_tag()).
// Non-block weights (patch, text, time, head) are not in the store: WanDit owns them
// (WanDit::load(ck, run, device, /*load_blocks=*/false)).
//
// Owns the blobs it registered (dropped on destruction when unpinned). Not copyable,
// movable. Immutable after open(): any thread may read block() / status_json().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "memory/blob.h"
#include "model/dit_block_weights.h"
#include "model/weight_storage.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class CheckpointDir;
}

namespace wand::sched::exec {

// One tensor inside a block blob.
struct BlockTensor {
  std::string name;              // state-dict key, e.g. "blocks.3.ffn.0.weight"
  std::uint64_t offset = 0;      // bytes from the blob's first byte
  at::ScalarType dtype = at::kBFloat16;
  std::vector<int64_t> shape;
  std::uint64_t nbytes = 0;
  // fp8: dtype is kByte (the codes), the fp32 scale ([] or [R, 1]) lies at scale_offset and
  // the view is dequantized to dequant_to (the run's GEMM dtype).
  bool fp8 = false;
  std::uint64_t scale_offset = 0;
  std::vector<int64_t> scale_shape;
  at::ScalarType dequant_to = at::kBFloat16;
};

// One block's blob: the tensors in DitBlockWeights::tensor_names() order.
struct BlockBlob {
  memory::BlobId id = 0;
  std::string blob_name;         // "<name>.block.<i>"
  std::string path;              // file holding the bytes (a shard or the packed file)
  std::uint64_t file_offset = 0;
  std::uint64_t bytes = 0;       // blob bytes
  std::vector<BlockTensor> tensors;
};

struct WeightStoreOptions {
  model::RunDtype run = model::RunDtype::kBFloat16;
  std::string name = "dit";      // blob name prefix
  std::string pack_dir;          // where packed files live; needed only when a repack is
  bool force_pack = false;       // pack even when the direct path is possible (tests, benches)
  // Which tensors are held in fp8 (Note [fp8 stored dtype]); the model's weights_dtype.
  model::WeightsDtype weights = model::WeightsDtype::kAuto;
  model::Fp8Scaling fp8_scaling = model::Fp8Scaling::kRow;  // for tensors wand quantizes
};

class WeightStore {
 public:
  static constexpr std::uint64_t kBlockAlign = 4096;
  static constexpr std::uint64_t kTensorAlign = 256;
  static constexpr int kPackVersion = 1;

  // Throws wand::Error(kConfig) when a repack is needed and pack_dir is empty,
  // kIo / kModelFormat naming the file for unreadable or truncated inputs.
  static WeightStore open(const model::CheckpointDir& ck, memory::MemoryPool& pool, const WeightStoreOptions& o);

  WeightStore(WeightStore&& other) noexcept;
  WeightStore& operator=(WeightStore&&) = delete;
  WeightStore(const WeightStore&) = delete;
  ~WeightStore();

  bool direct() const { return direct_; }                // every block over the shards
  std::int64_t packed_blocks() const { return packed_count_; }  // blocks in the packed file
  bool repacked_now() const { return repacked_now_; }  // false: direct, or an existing pack reused
  const std::string& packed_path() const { return packed_path_; }  // empty when direct()
  std::int64_t num_blocks() const { return static_cast<std::int64_t>(blocks_.size()); }
  const BlockBlob& block(std::int64_t i) const;
  const std::vector<BlockBlob>& blocks() const { return blocks_; }
  std::uint64_t max_block_bytes() const;
  std::uint64_t total_bytes() const;
  // The largest block's fp8 tensors in the run dtype: the device memory its dequantization
  // takes beside the slot while the block runs (0 without fp8).
  std::uint64_t max_block_dequant_bytes() const;
  std::int64_t fp8_tensors() const;  // over all blocks
  model::RunDtype run_dtype() const { return run_; }
  nlohmann::json status_json() const;

  // Packed file and manifest paths for a checkpoint (without opening anything). storage:
  // storage_tag() of the options ("" keeps the names packs had before fp8).
  static std::string pack_path(const std::string& pack_dir, const model::CheckpointDir& ck, model::RunDtype run,
                               const std::string& storage = "");
  // The stored dtype's part of a pack's identity: "" for weights kAuto, else "fp8-row",
  // "fp8-tensor" or "run".
  static std::string storage_tag(const WeightStoreOptions& o);

 private:
  WeightStore() = default;
  void register_blobs();

  memory::MemoryPool* pool_ = nullptr;
  std::string name_;
  model::RunDtype run_ = model::RunDtype::kBFloat16;
  bool direct_ = false;
  std::int64_t packed_count_ = 0;
  bool repacked_now_ = false;
  std::string packed_path_;
  std::vector<BlockBlob> blocks_;
};

// DitBlockWeights whose tensors are views (at::from_blob, no copy) into a copy of the
// block's blob starting at `data` on `device`. The copy must stay pinned while the views
// are used. fp8 tensors are dequantized instead (new tensors on `device`, Note [fp8
// dequantization]); the copy must stay pinned until those kernels ran.
model::DitBlockWeights view_block_weights(const BlockBlob& b, std::byte* data, at::Device device);

// Makes every block of `stores` take one whole slot on `tier` (Note [Size classes] in
// memory/tier.h): raises the tier's quantum to the largest block copy there, never lowers
// it. Every loop that streams blocks through a tier calls it before planning.
void reserve_block_slots(memory::MemoryPool& pool, int tier, const std::vector<const WeightStore*>& stores);

// Checks a job's expert schedule: every step names one of `experts` experts. Throws
// Error(kBadRequest) "<who>: step k names expert e of n".
void check_expert_schedule(const std::vector<int>& expert_of_step, std::size_t experts, const std::string& who);

}  // namespace wand::sched::exec
