// MemoryPool: the tiered pool the scheduler uses: tiers (host, optional disk, one device
// tier per GPU), the blob table, the io engine, and the transfers between them.
//
//   MemoryPool pool(PoolConfig::from_json(cfg));            // CPU device tiers
//   MemoryPool pool(cfg, cuda::pool_deps());                 // CudaTier + cudaHostAlloc
//   BlobId b = pool.register_file_blob("lo.block.3", shard, offset, nbytes);
//   Completion c = pool.request(b, pool.device_tier(0));     // disk -> host -> device
//   c.wait();                                                // throws IoError / OutOfMemory
//   {
//     PinnedCopy w = pool.pin(b, pool.device_tier(0));       // never evicted while held
//     run_kernel(w.data());
//   }                                                        // unpinned
//   pool.evict(b, pool.device_tier(0));
//   nlohmann::json s = pool.status_json();                   // `wanctl tiers`
//
// Mechanism only: request / pin / evict do what they are told. Which copies to prefetch
// and evict for a known schedule is the ResidencyManager's job; an allocation that does
// not fit evicts unpinned copies by LRU first (RequestOptions::evict), then throws
// wand::OutOfMemory naming the tier, the bytes requested, free and the largest free extent.
//
// Note [Transfer chains]: request(blob, device) on a blob that only lives in its file
// allocates the device extent and the host extent up front (so OutOfMemory is thrown
// synchronously), marks both copies loading, takes a transfer pin on the host copy, and
// chains host -> device behind the disk read with Completion::then. A failed link resets
// every copy it was filling to absent (extent freed, generation bumped) and fails their
// completions with the error; the rest of the pool is untouched. One host copy feeds any
// number of device tiers: each H2D holds its own transfer pin on it.
//
// Owns: the tiers, the blob table, the TransferEngine (and its io engine), the open files
// of file-backed blobs.
// Threads: every public method from any thread (one mutex, mu_, guards the blob table,
// the open files, the LRU policies and the in-flight count). Completions fire on engine
// threads; the destructor waits for every transfer in flight.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memory/blob_table.h"
#include "memory/clock.h"
#include "memory/completion.h"
#include "memory/device_tier.h"
#include "memory/host_tier.h"
#include "memory/io_engine.h"
#include "memory/lru_policy.h"
#include "memory/pool_config.h"
#include "memory/transfer_engine.h"

namespace wand::memory {

class DiskTier;
class MemoryPool;

using DeviceTierFactory = std::function<std::unique_ptr<DeviceTier>(const DeviceConfig&)>;

// What a pool is built from besides its config (memory/cuda's pool_deps() fills these
// with cudaHostAlloc and CudaTier).
struct PoolDeps {
  HostRegionFactory host_region;   // default: mmap + mlock (best effort)
  DeviceTierFactory device_tier;   // default: CpuDeviceTier
  const Clock* clock = nullptr;    // LRU time; default: a SteadyClock
};

struct RequestOptions {
  // May evict unpinned copies on the target tier (LRU) to make room. A host copy made on
  // the way to a device or the disk (staging) may always evict host copies by LRU.
  bool evict = true;
  // A demand (someone waits on it now): its disk reads go ahead of queued prefetches.
  // acquire() always sets it.
  bool urgent = false;
};

// A pin on one copy (RAII: unpins on destruction). Move-only.
class PinnedCopy {
 public:
  PinnedCopy() = default;
  PinnedCopy(PinnedCopy&& other) noexcept { *this = std::move(other); }
  PinnedCopy& operator=(PinnedCopy&& other) noexcept;
  PinnedCopy(const PinnedCopy&) = delete;
  PinnedCopy& operator=(const PinnedCopy&) = delete;
  ~PinnedCopy() { reset(); }

  void reset();
  bool valid() const { return pool_ != nullptr; }
  // Waits until the copy is ready (rethrows a load failure).
  void wait() const { ready_.wait(); }
  const Completion& ready() const { return ready_; }
  // First byte of the blob in the copy: a host pointer on host / CPU device tiers, a
  // device pointer on CUDA tiers, nullptr on the disk tier. Valid once wait() returned.
  std::byte* data() const { return data_; }
  std::uint64_t bytes() const { return bytes_; }
  BlobId blob() const { return id_; }
  int tier() const { return tier_; }

 private:
  friend class MemoryPool;
  MemoryPool* pool_ = nullptr;
  BlobId id_ = 0;
  int tier_ = -1;
  std::uint64_t generation_ = 0;
  std::byte* data_ = nullptr;
  std::uint64_t bytes_ = 0;
  Completion ready_;
};

class MemoryPool {
 public:
  explicit MemoryPool(const PoolConfig& config, PoolDeps deps = {});
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // Tiers: 0 is host, then disk (if configured), then one per device in config order.
  std::size_t tier_count() const { return tiers_.size(); }
  Tier& tier(int index) const;
  int host_tier() const { return 0; }
  int disk_tier() const { return disk_index_; }  // -1 when none
  int device_tier(int gpu) const;                // throws wand::Error(kNotFound)
  std::vector<int> device_tiers() const;
  IoEngine& io_engine() { return xfer_->io(); }

  // Blobs. A file-backed blob is checked against the file's size (wand::Error(kIo) naming
  // the file when the range is past its end); names are unique.
  BlobId register_file_blob(const std::string& name, const std::string& path, std::uint64_t offset,
                            std::uint64_t bytes);
  BlobId create_blob(const std::string& name, std::uint64_t bytes);
  // Frees every copy; throws wand::Error(kBadRequest) while a copy is pinned or loading.
  void drop_blob(BlobId id);
  std::optional<BlobId> find_blob(const std::string& name) const;
  std::uint64_t blob_bytes(BlobId id) const;
  CopyState state(BlobId id, int tier) const;
  // Bytes a copy of the blob takes on the tier (rounding, O_DIRECT head and tail).
  std::uint64_t copy_bytes(BlobId id, int tier) const;

  // Makes a ready copy on the tier (no-op when there is one; the pending completion when
  // one is loading). Throws wand::OutOfMemory synchronously; transfer failures arrive
  // through the completion. See Note [Transfer chains].
  Completion request(BlobId id, int tier, RequestOptions options = {});
  // Pins a ready or loading copy (throws wand::Error(kBadRequest) when absent).
  PinnedCopy pin(BlobId id, int tier);
  // request + pin (atomically) + wait; rethrows a load failure.
  PinnedCopy acquire(BlobId id, int tier, RequestOptions options = {});
  // Drops an unpinned ready copy. false when there is none; throws wand::Error(kBadRequest)
  // when pinned, loading, or the last copy of an empty-created blob's data.
  bool evict(BlobId id, int tier);

  // Copies present on a tier (ready or loading), for the residency planner.
  std::vector<ResidentCopy> resident(int tier) const;

  // Per-tier JSON status (see Note [Pool status]).
  nlohmann::json status_json();

 private:
  friend class PinnedCopy;
  struct Source {
    int tier = -1;               // -1: the blob's file; -2: nothing to copy (fresh blob)
    std::uint64_t generation = 0;
    Extent extent;
    std::uint64_t head = 0;
    Completion ready;            // when the source copy is usable
  };
  struct OpenFile {
    int fd = -1;
    bool direct = false;
  };
  using Launches = std::vector<std::function<void()>>;

  Completion request_locked(Blob& b, int t, const RequestOptions& options, Launches& launches);
  Extent allocate_locked(int t, std::uint64_t bytes, bool may_evict, BlobId requester);
  bool evictable_locked(const Blob& b, int t) const;
  void evict_locked(Blob& b, int t);
  void reset_copy_locked(Blob& b, int t);
  void pin_locked(Blob& b, int t);
  PinnedCopy pin_copy_locked(Blob& b, int t);
  void unpin(BlobId id, int tier, std::uint64_t generation);
  void start_transfer(BlobId id, std::uint64_t bytes, int t, Extent dst, std::uint64_t dst_head,
                      std::uint64_t generation, Source src, bool urgent, CompletionSource done);
  void finish_transfer(BlobId id, int t, std::uint64_t generation, const Source& src,
                       CompletionSource done, std::exception_ptr err);
  OpenFile open_file_locked(const std::string& path);

  std::vector<std::unique_ptr<Tier>> tiers_;   // immutable after construction
  std::vector<DeviceTier*> device_by_tier_;    // nullptr for host / disk; immutable
  std::vector<int> device_gpu_;                // gpu index per tier (-1); immutable
  HostTier* host_ = nullptr;
  DiskTier* disk_ = nullptr;
  int disk_index_ = -1;
  std::unique_ptr<Clock> own_clock_;
  const Clock* clock_ = nullptr;
  std::unique_ptr<TransferEngine> xfer_;

  mutable std::mutex mu_;
  BlobTable blobs_;                                    // guarded by mu_
  std::vector<std::unique_ptr<LruPolicy>> lru_;        // guarded by mu_, one per tier
  std::unordered_map<std::string, OpenFile> files_;    // guarded by mu_
  std::size_t in_flight_ = 0;                          // guarded by mu_
  std::condition_variable idle_cv_;

  // Note [Pool status]: status_json() reports, per tier, capacity / used / pinned /
  // largest free extent / transfers in flight / total bytes moved in and out, and the
  // GB/s moved (in + out) since the previous status_json() call (the "last interval"):
  //   {"tiers": [{"name": "host", "kind": "host", "capacity_bytes": .., "used_bytes": ..,
  //               "free_bytes": .., "pinned_bytes": .., "largest_free_bytes": ..,
  //               "transfers_in_flight": .., "bytes_moved_in": .., "bytes_moved_out": ..,
  //               "gbps": .., "page_locked": true},
  //              {"name": "disk", "kind": "disk", ..., "path": "/spool/wand-spool-1-0.bin"},
  //              {"name": "device0", "kind": "device", ..., "device": 0, "backend": "cuda"}],
  //    "io_engine": "io_uring", "io_registered_bytes": .., "interval_s": .., "blobs": ..}
  std::mutex stats_mu_;
  std::uint64_t last_status_ns_ = 0;                   // guarded by stats_mu_
  std::vector<std::uint64_t> last_moved_;              // guarded by stats_mu_
};

}  // namespace wand::memory
