#include "scheduler/exec/store_cache.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "scheduler/exec/fingerprint.h"

namespace wand::sched::exec {

struct StoreCache::State {
  struct Use {
    std::string blob_prefix;
    int jobs = 0;
    std::string planner;  // the job planning the host tier ("": none)
  };
  std::mutex mu;
  std::map<std::string, std::weak_ptr<WeightStore>> entries;  // key -> store
  std::map<const WeightStore*, Use> uses;                     // the live stores of this cache
  std::uint64_t opened = 0;
};

StoreCache::StoreCache(memory::MemoryPool& pool, std::string prefix)
    : pool_(pool), prefix_(std::move(prefix)), state_(std::make_shared<State>()) {}

std::shared_ptr<WeightStore> StoreCache::get(const model::CheckpointDir& ck, const WeightStoreOptions& o) {
  const std::string run = model::run_dtype_name(o.run);
  // The checkpoint's identity: its directory and its shards' paths, sizes, mtimes and headers
  // (fingerprint.h). Two expert directories whose indexes name the same shards (the model
  // maker's --share-experts fixture) are two stores, as two real experts are: each holds its
  // own copies in the tiers, so the fixture streams and spills as much as a real model.
  const std::string key = ck.dir().lexically_normal().string() + "|" + checkpoint_fingerprint(ck.shard_paths(), run) +
                          "|" + run + "|" + o.pack_dir + "|" + (o.force_pack ? "pack" : "auto") + "|" +
                          WeightStore::storage_tag(o);
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->entries.find(key);
  if (it != state_->entries.end()) {
    if (std::shared_ptr<WeightStore> s = it->second.lock()) return s;
  }
  WeightStoreOptions wo = o;
  wo.name = prefix_ + "." + ck.dir().filename().string() + "." + run + "." + std::to_string(state_->opened++);
  // The deleter forgets the store's use entry first (its address may be reused).
  std::shared_ptr<State> st = state_;
  std::shared_ptr<WeightStore> s(new WeightStore(WeightStore::open(ck, pool_, wo)), [st](WeightStore* p) {
    {
      std::lock_guard<std::mutex> l(st->mu);
      st->uses.erase(p);
    }
    delete p;
  });
  state_->uses[s.get()].blob_prefix = wo.name;
  state_->entries[key] = s;
  log::get("sched")->info("store cache opened name={} dir={} run={} stores={}", wo.name, ck.dir().string(), run,
                          state_->uses.size());
  return s;
}

StoreCache::JobLease StoreCache::begin_job(const std::vector<const WeightStore*>& stores, bool want_host_planning,
                                           const std::string& who) {
  JobLease lease;  // declared before the lock: its release() takes the mutex
  std::lock_guard<std::mutex> lock(state_->mu);
  int others = 0;
  for (const WeightStore* s : stores) {
    auto it = state_->uses.find(s);
    if (it == state_->uses.end()) continue;  // not shared
    if (!it->second.planner.empty()) {
      throw Error(ErrorCode::kConfig,
                  "store cache: job '" + who + "' cannot start: job '" + it->second.planner +
                      "' plans the host tier (host_window_bytes > 0) of the shared weight store '" +
                      it->second.blob_prefix + "' (" + std::to_string(it->second.jobs) +
                      " job(s) on it now); its host plan would evict host copies this job streams from "
                      "(Note [Shared stores and host planning]). Set host_window_bytes to 0 to run jobs of one "
                      "model on several cards at once");
    }
    others = std::max(others, it->second.jobs);
    lease.stores_.push_back(s);
  }
  lease.state_ = state_;  // from here on the lease owns its counts
  lease.host_planning_ = want_host_planning && others == 0;
  for (const WeightStore* s : lease.stores_) {
    State::Use& u = state_->uses[s];
    ++u.jobs;
    if (lease.host_planning_) u.planner = who;
  }
  if (want_host_planning && !lease.host_planning_) {
    log::get("sched")->warn("store cache: job '{}' runs without host tier planning: {} other job(s) use its shared "
                            "weight stores",
                            who, others);
  }
  return lease;
}

void StoreCache::JobLease::release() {
  if (!state_) return;
  std::lock_guard<std::mutex> lock(state_->mu);
  for (const WeightStore* s : stores_) {
    auto it = state_->uses.find(s);
    if (it == state_->uses.end()) continue;
    --it->second.jobs;
    if (host_planning_) it->second.planner.clear();
  }
  stores_.clear();
  host_planning_ = false;
  state_.reset();
}

StoreCache::JobLease& StoreCache::JobLease::operator=(JobLease&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
    stores_ = std::move(o.stores_);
    host_planning_ = o.host_planning_;
    o.state_.reset();
    o.stores_.clear();
    o.host_planning_ = false;
  }
  return *this;
}

StoreCache::JobLease::~JobLease() { release(); }

std::size_t StoreCache::size() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->uses.size();
}

int StoreCache::jobs_on(const WeightStore* store) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->uses.find(store);
  return it == state_->uses.end() ? 0 : it->second.jobs;
}

}  // namespace wand::sched::exec
