// StoreCache: the weight stores of a memory pool shared by every pipeline that streams the
// same expert, so that one pinned host copy of each block blob feeds every card (issue 7,
// item 1). Keyed by (checkpoint fingerprint, run dtype, pack dir, force_pack, stored dtype); each key
// opens its WeightStore once, under a blob prefix of its own ("<prefix>.<expert dir
// name>.<run dtype>.<n>", n counting the stores this cache opened).
//
//   auto cache = std::make_shared<StoreCache>(pool, "wan");     // one per pool (the registry's)
//   sched::StreamedDitOptions o;  o.stores = cache.get();  ...     // scheduler/wan/streamed_dit.h
//   StreamedDit a(pool, experts, o_card0), b(pool, experts, o_card1);  // same WeightStores
//   std::shared_ptr<WeightStore> s = cache->get(ck, wo);        // or directly; wo.name is ignored
//
// The cache holds its stores weakly: a store lives while a pipeline holds it (a model
// reloaded with a changed checkpoint gets a new key; the old store's blobs go with its
// last pipeline). A key opened again after that gets a new prefix (n), since blobs still
// pinned by a finishing job keep their names until dropped.
//
// Note [Shared stores and host planning]: with host_window_bytes > 0 a job's DitExecutor
// plans the HOST tier over its own schedule (evicts the finished expert's host copies,
// reads the idle one ahead). Sharing a store between two jobs of one model on two cards
// means both jobs' device tiers are fed from the same host copies, but each host plan
// knows only its own job: one job's plan would evict a host copy the other job is
// copying from (a transfer pin: MemoryPool::evict throws) or about to use. So a job may
// plan the host tier only while it is the only job on its stores: begin_job() below
// grants host planning to a job that starts alone, runs a job that starts beside other
// jobs WITHOUT host planning (its blocks stay in host memory once read, as with
// host_window_bytes = 0), and refuses (Error(kConfig), naming the stores and the planning
// job) a job that would start while another job plans the host tier. Without host
// planning nothing evicts host copies but the pool's own LRU under pressure, which skips
// pinned copies, so any number of jobs share a store.
//
// Threads: every method from any thread (one mutex; get() opens a store, a repack
// included, under it). Borrows the pool (it must outlive the cache and its stores).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/exec/weight_store.h"

namespace wand::memory {
class MemoryPool;
}
namespace wand::model {
class CheckpointDir;
}

namespace wand::sched::exec {

class StoreCache {
 public:
  StoreCache(memory::MemoryPool& pool, std::string prefix = "stores");
  StoreCache(const StoreCache&) = delete;
  StoreCache& operator=(const StoreCache&) = delete;

  memory::MemoryPool& pool() const { return pool_; }

  // The shared store of (ck, o.run, o.pack_dir, o.force_pack): opened now (WeightStore::open,
  // repack included) when no pipeline holds it, else the open one. o.name is ignored (the
  // cache names the blobs). Throws as WeightStore::open.
  std::shared_ptr<WeightStore> get(const model::CheckpointDir& ck, const WeightStoreOptions& o);

  struct State;  // the tables, shared with the stores' deleters and the leases

  // A job's use of shared stores (Note [Shared stores and host planning]); released on
  // destruction. host_planning(): whether the job may plan the host tier.
  class JobLease {
   public:
    JobLease() = default;
    JobLease(JobLease&& o) noexcept = default;
    JobLease& operator=(JobLease&& o) noexcept;
    JobLease(const JobLease&) = delete;
    JobLease& operator=(const JobLease&) = delete;
    ~JobLease();
    bool host_planning() const { return host_planning_; }

   private:
    friend class StoreCache;
    void release();
    std::shared_ptr<State> state_;
    std::vector<const WeightStore*> stores_;
    bool host_planning_ = false;
  };
  // Registers a job on `stores` (stores not from this cache are ignored). want_host_planning:
  // the job has host_window_bytes > 0. `who` names the job in errors and logs. Throws
  // Error(kConfig) when another job plans the host tier of one of these stores now.
  JobLease begin_job(const std::vector<const WeightStore*>& stores, bool want_host_planning, const std::string& who);

  // Stores alive, for stats and tests.
  std::size_t size() const;
  // Jobs registered on a store now (0 for a store not from this cache).
  int jobs_on(const WeightStore* store) const;

 private:
  memory::MemoryPool& pool_;
  std::string prefix_;
  std::shared_ptr<State> state_;
};

}  // namespace wand::sched::exec
