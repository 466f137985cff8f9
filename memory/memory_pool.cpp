#include "memory/memory_pool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"
#include "memory/cpu_device_tier.h"
#include "memory/disk_tier.h"

namespace wand::memory {

namespace {
constexpr std::uint64_t kBlock = 4096;  // O_DIRECT alignment of file offsets and lengths
constexpr int kFromFile = -1;
constexpr int kNoSource = -2;

std::uint64_t align_down(std::uint64_t v) { return v & ~(kBlock - 1); }
std::uint64_t align_up(std::uint64_t v) { return (v + kBlock - 1) & ~(kBlock - 1); }

HostRegion plain_host_region(std::uint64_t bytes) {
  HostRegion r;
  r.bytes = bytes;
  void* p = std::aligned_alloc(kBlock, align_up(bytes == 0 ? 1 : bytes));
  if (!p) throw OutOfMemory("host", bytes, 0, 0, "aligned_alloc failed");
  r.data = static_cast<std::byte*>(p);
  r.how = "aligned_alloc";
  r.release = [](std::byte* d, std::uint64_t) { std::free(d); };
  return r;
}
}  // namespace

// ---- PinnedCopy ----

PinnedCopy& PinnedCopy::operator=(PinnedCopy&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = other.pool_;
    id_ = other.id_;
    tier_ = other.tier_;
    generation_ = other.generation_;
    data_ = other.data_;
    bytes_ = other.bytes_;
    ready_ = std::move(other.ready_);
    other.pool_ = nullptr;
  }
  return *this;
}

void PinnedCopy::reset() {
  if (pool_) {
    pool_->unpin(id_, tier_, generation_);
    pool_ = nullptr;
  }
}

// ---- construction ----

MemoryPool::MemoryPool(const PoolConfig& config, PoolDeps deps) : blobs_(0) {
  HostRegionFactory host_factory = deps.host_region;
  if (!host_factory) {
    host_factory = config.host_pinned ? HostRegionFactory(map_locked_host_region)
                                      : HostRegionFactory(plain_host_region);
  }
  auto host = std::make_unique<HostTier>(config.host_bytes, host_factory);
  host_ = host.get();
  tiers_.push_back(std::move(host));
  if (config.disk) {
    auto disk = std::make_unique<DiskTier>(config.disk->dir, config.disk->bytes);
    disk_ = disk.get();
    disk_index_ = static_cast<int>(tiers_.size());
    tiers_.push_back(std::move(disk));
  }
  device_by_tier_.assign(tiers_.size(), nullptr);
  device_gpu_.assign(tiers_.size(), -1);
  for (const auto& dc : config.devices) {
    std::unique_ptr<DeviceTier> dev;
    if (deps.device_tier) dev = deps.device_tier(dc);
    if (!dev) {
      if (dc.backend == "cuda") {
        throw Error(ErrorCode::kConfig, "devices[" + std::to_string(dc.index) +
                                            "].backend: cuda requested but this pool has no CUDA device factory");
      }
      dev = std::make_unique<CpuDeviceTier>(dc.index, dc.bytes);
    }
    device_by_tier_.push_back(dev.get());
    device_gpu_.push_back(dc.index);
    tiers_.push_back(std::move(dev));
  }
  if (deps.clock) {
    clock_ = deps.clock;
  } else {
    own_clock_ = std::make_unique<SteadyClock>();
    clock_ = own_clock_.get();
  }
  for (std::size_t i = 0; i < tiers_.size(); ++i) lru_.push_back(std::make_unique<LruPolicy>(*clock_));
  blobs_ = BlobTable(tiers_.size());
  last_moved_.assign(tiers_.size(), 0);

  IoEngineOptions io = config.io;
  if (host_->bytes_capacity() > 0) io.fixed_regions.push_back({host_->base(), host_->bytes_capacity()});
  xfer_ = std::make_unique<TransferEngine>(*host_, disk_, make_io_engine(io));
  wand::log::get("mem")->info("pool tiers={} host={} disk={} devices={} io={}", tiers_.size(),
                              format_bytes(host_->bytes_capacity()),
                              disk_ ? format_bytes(disk_->bytes_capacity()) : std::string("none"),
                              config.devices.size(), xfer_->io().name());
}

MemoryPool::~MemoryPool() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [&] { return in_flight_ == 0; });
    for (auto& [path, f] : files_) ::close(f.fd);
    files_.clear();
  }
  xfer_.reset();  // joins the engine threads before the tiers go
}

Tier& MemoryPool::tier(int index) const {
  if (index < 0 || static_cast<std::size_t>(index) >= tiers_.size()) {
    throw Error(ErrorCode::kNotFound, "no tier with index " + std::to_string(index));
  }
  return *tiers_[static_cast<std::size_t>(index)];
}

int MemoryPool::device_tier(int gpu) const {
  for (std::size_t i = 0; i < device_gpu_.size(); ++i) {
    if (device_gpu_[i] == gpu) return static_cast<int>(i);
  }
  throw Error(ErrorCode::kNotFound, "no device tier for gpu " + std::to_string(gpu));
}

std::vector<int> MemoryPool::device_tiers() const {
  std::vector<int> out;
  for (std::size_t i = 0; i < device_by_tier_.size(); ++i) {
    if (device_by_tier_[i]) out.push_back(static_cast<int>(i));
  }
  return out;
}

// ---- blobs ----

MemoryPool::OpenFile MemoryPool::open_file_locked(const std::string& path) {
  auto it = files_.find(path);
  if (it != files_.end()) return it->second;
  OpenFile f;
  f.fd = open_for_read(path, &f.direct);
  files_[path] = f;
  return f;
}

BlobId MemoryPool::register_file_blob(const std::string& name, const std::string& path,
                                      std::uint64_t offset, std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (blobs_.find(name)) throw Error(ErrorCode::kBadRequest, "blob '" + name + "' already exists");
  OpenFile f = open_file_locked(path);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw IoError(path, 0, errno, "cannot stat");
  if (offset + bytes > static_cast<std::uint64_t>(st.st_size)) {
    throw Error(ErrorCode::kIo, "blob '" + name + "': file " + path + " has " +
                                    std::to_string(st.st_size) + " bytes, the blob needs [" +
                                    std::to_string(offset) + ", " + std::to_string(offset + bytes) + ")");
  }
  return blobs_.add(name, bytes, FileRange{path, offset}).id;
}

BlobId MemoryPool::create_blob(const std::string& name, std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  return blobs_.add(name, bytes, std::nullopt).id;
}

void MemoryPool::drop_blob(BlobId id) {
  std::lock_guard<std::mutex> lock(mu_);
  Blob& b = blobs_.at(id);
  for (std::size_t t = 0; t < b.copies.size(); ++t) {
    const BlobCopy& c = b.copies[t];
    if (c.pins > 0 || c.state == CopyState::kLoading) {
      throw Error(ErrorCode::kBadRequest, "blob '" + b.name + "' cannot be dropped: its copy on " +
                                              tiers_[t]->name() + " is " +
                                              (c.pins > 0 ? "pinned" : "loading"));
    }
  }
  for (std::size_t t = 0; t < b.copies.size(); ++t) {
    if (b.copies[t].state == CopyState::kReady) reset_copy_locked(b, static_cast<int>(t));
  }
  blobs_.erase(id);
}

std::optional<BlobId> MemoryPool::find_blob(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return blobs_.find(name);
}

std::uint64_t MemoryPool::blob_bytes(BlobId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Blob* b = blobs_.find(id);
  if (!b) throw Error(ErrorCode::kNotFound, "no blob with id " + std::to_string(id));
  return b->bytes;
}

CopyState MemoryPool::state(BlobId id, int t) const {
  tier(t);
  std::lock_guard<std::mutex> lock(mu_);
  const Blob* b = blobs_.find(id);
  if (!b) throw Error(ErrorCode::kNotFound, "no blob with id " + std::to_string(id));
  return b->copies[static_cast<std::size_t>(t)].state;
}

std::uint64_t MemoryPool::copy_bytes(BlobId id, int t) const {
  Tier& tr = tier(t);
  std::lock_guard<std::mutex> lock(mu_);
  const Blob* b = blobs_.find(id);
  if (!b) throw Error(ErrorCode::kNotFound, "no blob with id " + std::to_string(id));
  if (t == host_tier() && b->file) {
    return tr.round_up(align_up(b->file->offset + b->bytes) - align_down(b->file->offset));
  }
  return tr.round_up(b->bytes);
}

std::vector<ResidentCopy> MemoryPool::resident(int t) const {
  tier(t);
  std::vector<ResidentCopy> out;
  std::lock_guard<std::mutex> lock(mu_);
  blobs_.for_each([&](const Blob& b) {
    const BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
    if (c.state == CopyState::kReady || c.state == CopyState::kLoading) {
      out.push_back({b.id, c.extent.bytes, c.pins, c.state == CopyState::kReady});
    }
  });
  return out;
}

// ---- allocation and eviction ----

bool MemoryPool::evictable_locked(const Blob& b, int t) const {
  const BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
  if (c.state != CopyState::kReady || c.pins > 0) return false;
  if (b.file) return true;  // the file keeps the bytes
  for (std::size_t o = 0; o < b.copies.size(); ++o) {
    if (static_cast<int>(o) != t && b.copies[o].state == CopyState::kReady) return true;
  }
  return false;  // the last copy of a spill's data
}

void MemoryPool::reset_copy_locked(Blob& b, int t) {
  BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
  Tier& tr = *tiers_[static_cast<std::size_t>(t)];
  if (c.pins > 0) tr.add_pinned(-static_cast<std::int64_t>(c.extent.bytes));
  tr.free(c.extent);
  c.state = CopyState::kAbsent;
  c.extent = {};
  c.head = 0;
  c.pins = 0;
  c.pending = Completion();
  ++c.generation;
  lru_[static_cast<std::size_t>(t)]->on_remove(b.id);
}

void MemoryPool::evict_locked(Blob& b, int t) {
  BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
  c.state = CopyState::kEvicting;
  wand::log::get("mem")->debug("evict blob={} tier={} bytes={}", b.name,
                               tiers_[static_cast<std::size_t>(t)]->name(), format_bytes(c.extent.bytes));
  reset_copy_locked(b, t);
}

Extent MemoryPool::allocate_locked(int t, std::uint64_t bytes, bool may_evict, BlobId requester) {
  Tier& tr = *tiers_[static_cast<std::size_t>(t)];
  for (;;) {
    if (auto e = tr.try_allocate(bytes)) return *e;
    if (!may_evict || bytes > tr.bytes_capacity()) break;
    std::vector<EvictionCandidate> cands;
    blobs_.for_each([&](const Blob& b) {
      if (b.id != requester && evictable_locked(b, t)) {
        cands.push_back({b.id, b.copies[static_cast<std::size_t>(t)].extent.bytes, 0});
      }
    });
    auto victim = lru_[static_cast<std::size_t>(t)]->choose_victim(cands);
    if (!victim) break;
    evict_locked(blobs_.at(*victim), t);
  }
  return tr.allocate(bytes);  // throws OutOfMemory with the tier's figures
}

bool MemoryPool::evict(BlobId id, int t) {
  tier(t);
  std::lock_guard<std::mutex> lock(mu_);
  Blob& b = blobs_.at(id);
  BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
  if (c.state == CopyState::kAbsent) return false;
  const std::string where = "blob '" + b.name + "' on " + tiers_[static_cast<std::size_t>(t)]->name();
  if (c.state == CopyState::kLoading) throw Error(ErrorCode::kBadRequest, "cannot evict " + where + ": loading");
  if (c.pins > 0) {
    throw Error(ErrorCode::kBadRequest, "cannot evict " + where + ": pinned " + std::to_string(c.pins) + " times");
  }
  if (!evictable_locked(b, t)) {
    throw Error(ErrorCode::kBadRequest, "cannot evict " + where +
                                            ": it is the only copy of the blob's data (copy it to another tier first)");
  }
  evict_locked(b, t);
  return true;
}

// ---- pins ----

void MemoryPool::pin_locked(Blob& b, int t) {
  BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
  if (c.pins++ == 0) tiers_[static_cast<std::size_t>(t)]->add_pinned(static_cast<std::int64_t>(c.extent.bytes));
}

void MemoryPool::unpin(BlobId id, int t, std::uint64_t generation) {
  std::lock_guard<std::mutex> lock(mu_);
  Blob* b = blobs_.find(id);
  if (!b) return;
  BlobCopy& c = b->copies[static_cast<std::size_t>(t)];
  if (c.generation != generation || c.pins == 0) return;  // the copy failed and was reset
  if (--c.pins == 0) tiers_[static_cast<std::size_t>(t)]->add_pinned(-static_cast<std::int64_t>(c.extent.bytes));
}

PinnedCopy MemoryPool::pin_copy_locked(Blob& b, int t) {
  Tier& tr = *tiers_[static_cast<std::size_t>(t)];
  BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
  if (c.state != CopyState::kReady && c.state != CopyState::kLoading) {
    throw Error(ErrorCode::kBadRequest, "cannot pin blob '" + b.name + "' on " + tr.name() + ": no copy there (" +
                                            copy_state_name(c.state) + "); request it first");
  }
  pin_locked(b, t);
  lru_[static_cast<std::size_t>(t)]->on_access(b.id);
  PinnedCopy p;
  p.pool_ = this;
  p.id_ = b.id;
  p.tier_ = t;
  p.generation_ = c.generation;
  p.bytes_ = b.bytes;
  p.data_ = tr.base() ? tr.base() + c.extent.offset + c.head : nullptr;
  p.ready_ = c.state == CopyState::kReady ? Completion::ready() : c.pending;
  return p;
}

PinnedCopy MemoryPool::pin(BlobId id, int t) {
  tier(t);
  std::lock_guard<std::mutex> lock(mu_);
  return pin_copy_locked(blobs_.at(id), t);
}

PinnedCopy MemoryPool::acquire(BlobId id, int t, RequestOptions options) {
  tier(t);
  options.urgent = true;
  Launches launches;
  PinnedCopy p;
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      Blob& b = blobs_.at(id);
      request_locked(b, t, options, launches);
      p = pin_copy_locked(b, t);  // in the same critical section: nobody evicts in between
    } catch (...) {
      err = std::current_exception();
    }
  }
  for (auto& launch : launches) launch();
  if (err) std::rethrow_exception(err);
  p.wait();
  return p;
}

// ---- requests and transfers ----

Completion MemoryPool::request(BlobId id, int t, RequestOptions options) {
  tier(t);
  Launches launches;
  Completion c;
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      c = request_locked(blobs_.at(id), t, options, launches);
    } catch (...) {
      err = std::current_exception();
    }
  }
  for (auto& launch : launches) launch();  // also on failure: copies already marked loading
  if (err) std::rethrow_exception(err);
  return c;
}

Completion MemoryPool::request_locked(Blob& b, int t, const RequestOptions& options, Launches& launches) {
  const auto ti = static_cast<std::size_t>(t);
  BlobCopy& c = b.copies[ti];
  lru_[ti]->on_access(b.id);
  if (c.state == CopyState::kReady) return Completion::ready();
  if (c.state == CopyState::kLoading) return c.pending;
  WAND_ASSERT(c.state == CopyState::kAbsent, "copy in an unexpected state");

  const int host = host_tier();
  const TierKind kind = tiers_[ti]->kind();
  auto usable = [&](int s) {
    if (s < 0) return false;
    const CopyState st = b.copies[static_cast<std::size_t>(s)].state;
    return st == CopyState::kReady || st == CopyState::kLoading;
  };
  if (kind == TierKind::kDisk && b.file) {
    throw Error(ErrorCode::kBadRequest, "blob '" + b.name + "' is file-backed: its file " + b.file->path +
                                            " is its disk copy");
  }

  // Destination extent first, so that a failure below leaves nothing behind.
  std::uint64_t head = 0;
  std::uint64_t alloc = b.bytes;
  const bool from_file = kind == TierKind::kHost && b.file && !usable(disk_index_);
  if (from_file) {
    head = b.file->offset - align_down(b.file->offset);
    alloc = align_up(b.file->offset + b.bytes) - align_down(b.file->offset);
  }
  const Extent dst = allocate_locked(t, alloc, options.evict, b.id);

  Source src;
  try {
    if (!b.has_data) {
      src.tier = kNoSource;
    } else if (from_file) {
      src.tier = kFromFile;
    } else if (kind == TierKind::kHost) {
      if (usable(disk_index_)) {
        src.tier = disk_index_;
      } else {
        for (int d : device_tiers()) {
          if (b.copies[static_cast<std::size_t>(d)].state == CopyState::kReady) {
            src.tier = d;
            break;
          }
        }
        WAND_ASSERT(src.tier >= 0, "blob '" + b.name + "' has data but no copy to load it from");
      }
    } else {
      // Device and disk copies are made from the host copy (loading it first if needed).
      // The staging copy may always evict by LRU: RequestOptions::evict is about the
      // target tier, which a residency plan manages; the host tier is managed by use.
      if (!usable(host)) {
        RequestOptions staging;
        staging.urgent = options.urgent;
        request_locked(b, host, staging, launches);
      }
      src.tier = host;
    }
  } catch (...) {
    tiers_[ti]->free(dst);
    throw;
  }

  c.extent = dst;
  c.head = head;
  if (src.tier == kNoSource) {  // a fresh spill: nothing to copy
    c.state = CopyState::kReady;
    b.has_data = true;
    return Completion::ready();
  }
  if (src.tier >= 0) {
    BlobCopy& s = b.copies[static_cast<std::size_t>(src.tier)];
    pin_locked(b, src.tier);  // transfer pin, dropped in finish_transfer
    src.generation = s.generation;
    src.extent = s.extent;
    src.head = s.head;
    src.ready = s.state == CopyState::kReady ? Completion::ready() : s.pending;
  } else {
    src.ready = Completion::ready();
  }
  CompletionSource done;
  c.state = CopyState::kLoading;
  c.pending = done.completion();
  ++in_flight_;
  launches.push_back([this, id = b.id, bytes = b.bytes, t, dst, head, generation = c.generation, src,
                      urgent = options.urgent, done]() {
    src.ready.then([=](const std::exception_ptr& err) {
      if (err) {
        finish_transfer(id, t, generation, src, done, err);
      } else {
        start_transfer(id, bytes, t, dst, head, generation, src, urgent, done);
      }
    });
  });
  return c.pending;
}

void MemoryPool::start_transfer(BlobId id, std::uint64_t bytes, int t, Extent dst, std::uint64_t dst_head,
                                std::uint64_t generation, Source src, bool urgent, CompletionSource done) {
  Tier& to = *tiers_[static_cast<std::size_t>(t)];
  Completion moved;
  try {
    if (src.tier == kFromFile) {
      OpenFile f;
      std::string path;
      std::uint64_t file_offset = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const Blob& b = blobs_.at(id);
        f = open_file_locked(b.file->path);
        path = b.file->path;
        file_offset = align_down(b.file->offset);
      }
      moved = xfer_->file_to_host(f.fd, path, f.direct, file_offset, dst, dst_head, bytes, urgent);
    } else {
      Tier& from = *tiers_[static_cast<std::size_t>(src.tier)];
      if (from.kind() == TierKind::kDisk) {
        moved = xfer_->disk_to_host(src.extent, dst, bytes, urgent);
      } else if (to.kind() == TierKind::kDisk) {
        moved = xfer_->host_to_disk(src.extent, dst, bytes);
      } else if (to.kind() == TierKind::kDevice) {
        moved = xfer_->host_to_device(*device_by_tier_[static_cast<std::size_t>(t)],
                                      host_->base() + src.extent.offset + src.head, dst.offset, bytes);
      } else {
        moved = xfer_->device_to_host(*device_by_tier_[static_cast<std::size_t>(src.tier)],
                                      src.extent.offset + src.head, host_->base() + dst.offset + dst_head, bytes);
      }
    }
  } catch (...) {
    finish_transfer(id, t, generation, src, done, std::current_exception());
    return;
  }
  moved.then([this, id, t, generation, src, done](const std::exception_ptr& err) {
    finish_transfer(id, t, generation, src, done, err);
  });
}

void MemoryPool::finish_transfer(BlobId id, int t, std::uint64_t generation, const Source& src,
                                 CompletionSource done, std::exception_ptr err) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Blob& b = blobs_.at(id);
    BlobCopy& c = b.copies[static_cast<std::size_t>(t)];
    WAND_ASSERT(c.generation == generation && c.state == CopyState::kLoading, "transfer finished on a stale copy");
    if (err) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(err);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      wand::log::get("mem")->warn("load failed blob={} tier={} err={}", b.name,
                                  tiers_[static_cast<std::size_t>(t)]->name(), what);
      reset_copy_locked(b, t);
    } else {
      c.state = CopyState::kReady;
      c.pending = Completion();
    }
    if (src.tier >= 0) {
      BlobCopy& s = b.copies[static_cast<std::size_t>(src.tier)];
      if (s.generation == src.generation && s.pins > 0) {
        if (--s.pins == 0) {
          tiers_[static_cast<std::size_t>(src.tier)]->add_pinned(-static_cast<std::int64_t>(s.extent.bytes));
        }
      }
    }
  }
  done.fail(err);  // success when err is null; runs chained transfers
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

// ---- status ----

nlohmann::json MemoryPool::status_json() {
  const auto now_ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                     std::chrono::steady_clock::now().time_since_epoch())
                                                     .count());
  std::lock_guard<std::mutex> lock(stats_mu_);
  const double interval_s = last_status_ns_ ? (now_ns - last_status_ns_) * 1e-9 : 0.0;
  nlohmann::json tiers = nlohmann::json::array();
  for (std::size_t i = 0; i < tiers_.size(); ++i) {
    const TierStats s = tiers_[i]->stats();
    const std::uint64_t moved = s.bytes_moved_in + s.bytes_moved_out;
    const double gbps = interval_s > 0 ? (moved - last_moved_[i]) / interval_s / 1e9 : 0.0;
    last_moved_[i] = moved;
    nlohmann::json t = {
        {"name", s.name},
        {"kind", tier_kind_name(s.kind)},
        {"capacity_bytes", s.bytes_capacity},
        {"used_bytes", s.bytes_used},
        {"free_bytes", s.bytes_capacity - s.bytes_used},
        {"pinned_bytes", s.bytes_pinned},
        {"largest_free_bytes", s.bytes_largest_free},
        {"transfers_in_flight", s.transfers_in_flight},
        {"bytes_moved_in", s.bytes_moved_in},
        {"bytes_moved_out", s.bytes_moved_out},
        {"gbps", gbps},
    };
    if (s.kind == TierKind::kDevice) {
      t["device"] = s.device_index;
      t["backend"] = device_by_tier_[i]->backend();
    }
    if (s.kind == TierKind::kHost) t["page_locked"] = host_->page_locked();
    if (s.kind == TierKind::kDisk) t["path"] = disk_->path();
    tiers.push_back(std::move(t));
  }
  last_status_ns_ = now_ns;
  std::size_t blobs = 0;
  {
    std::lock_guard<std::mutex> pool_lock(mu_);
    blobs = blobs_.size();
  }
  return {{"tiers", std::move(tiers)},
          {"io_engine", xfer_->io().name()},
          {"io_registered_bytes", xfer_->io().bytes_registered()},
          {"interval_s", interval_s},
          {"blobs", blobs}};
}

}  // namespace wand::memory
