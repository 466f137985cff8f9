#include "scheduler/exec/block_streamer.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "memory/residency_manager.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/weight_store.h"

namespace wand::sched::exec {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A pinned device copy of one block and the fence after the kernels that read it.
struct HeldBlock {
  memory::PinnedCopy pin;
  ComputeFence fence;
};

}  // namespace

BlockStreamer::BlockStreamer(memory::MemoryPool& pool, std::vector<const WeightStore*> stores,
                             std::vector<int> expert_of_step, BlockStreamerOptions options)
    : pool_(pool), stores_(std::move(stores)), expert_of_step_(std::move(expert_of_step)), opt_(options) {
  if (stores_.empty()) throw Error(ErrorCode::kBadRequest, "block streamer: no weight stores");
  for (std::size_t e = 0; e < stores_.size(); ++e) {
    if (stores_[e] == nullptr) {
      throw Error(ErrorCode::kBadRequest, "block streamer: store " + std::to_string(e) + " is null");
    }
    if (e == 0) layers_ = stores_[e]->num_blocks();
    if (stores_[e]->num_blocks() != layers_) {
      throw Error(ErrorCode::kBadRequest, "block streamer: store " + std::to_string(e) + " has " +
                                              std::to_string(stores_[e]->num_blocks()) + " blocks, store 0 " +
                                              std::to_string(layers_));
    }
  }
  check_expert_schedule(expert_of_step_, stores_.size(), "block streamer");
  const int dev = opt_.device_tier;
  if (dev < 0 || static_cast<std::size_t>(dev) >= pool_.tier_count() || dev == pool_.host_tier() ||
      dev == pool_.disk_tier()) {
    throw Error(ErrorCode::kBadRequest, "block streamer: tier " + std::to_string(dev) + " is not a device tier");
  }
  const bool host_addressable = pool_.tier(dev).host_addressable();
  if ((opt_.cuda_device < 0) != host_addressable) {
    throw Error(ErrorCode::kBadRequest, "block streamer: tier " + pool_.tier(dev).name() + " holds " +
                                            (host_addressable ? "host" : "device") +
                                            " memory but cuda_device=" + std::to_string(opt_.cuda_device));
  }
  // Blocks take whole slots on the tiers this streamer plans.
  reserve_block_slots(pool_, dev, stores_);
  if (opt_.host_window_bytes > 0) reserve_block_slots(pool_, pool_.host_tier(), stores_);

  // The job's static schedule of block uses, on the device tier and on the host tier.
  std::vector<memory::ScheduleEntry> dev_sched, host_sched;
  std::uint64_t max_block = 0;
  for (int e : expert_of_step_) {
    for (std::int64_t i = 0; i < layers_; ++i) {
      const memory::BlobId id = stores_[static_cast<std::size_t>(e)]->block(i).id;
      const std::uint64_t b = pool_.copy_bytes(id, dev);
      max_block = std::max(max_block, b);
      dev_sched.push_back({id, b});
      if (opt_.host_window_bytes > 0) host_sched.push_back({id, pool_.copy_bytes(id, pool_.host_tier())});
    }
  }
  window_ = std::max(opt_.window_bytes > 0 ? opt_.window_bytes : 2 * max_block, max_block);
  const std::uint64_t cap = pool_.tier(dev).bytes_capacity();
  DeviceBudget b = opt_.budget;
  if (b.slot_bytes == 0) b.slot_bytes = cap;
  // fp8 blocks are dequantized beside their slot while they run (Note [fp8 dequantization]).
  std::uint64_t dequant = 0;
  for (const WeightStore* st : stores_) dequant = std::max(dequant, st->max_block_dequant_bytes());
  check_device_budget(b, window_, max_block, opt_.activation_need_bytes > 0 ? opt_.activation_need_bytes + dequant : 0);
  device_rm_ = std::make_unique<memory::ResidencyManager>(dev_sched, cap, window_);
  if (opt_.host_window_bytes > 0) {
    host_rm_ = std::make_unique<memory::ResidencyManager>(host_sched, pool_.tier(pool_.host_tier()).bytes_capacity(),
                                                          std::max(opt_.host_window_bytes, max_block));
  }
  log::get("sched")->info("block streamer tier={} steps={} layers={} window={} host_window={} slots={} block={}",
                          pool_.tier(dev).name(), expert_of_step_.size(), layers_, format_bytes(window_),
                          format_bytes(opt_.host_window_bytes), format_bytes(cap), format_bytes(max_block));
}

BlockStreamer::~BlockStreamer() = default;

void BlockStreamer::plan_and_apply(std::size_t position) {
  const int dev = opt_.device_tier, host = pool_.host_tier();
  if (host_rm_) {
    memory::ResidencyPlan hp = host_rm_->plan(position, pool_.resident(host));
    for (memory::BlobId id : hp.prefetch) stats_.host_bytes_in += pool_.copy_bytes(id, host);
    host_rm_->apply(hp, pool_, host);
  }
  memory::ResidencyPlan p = device_rm_->plan(position, pool_.resident(dev));
  for (memory::BlobId id : p.prefetch) {
    if (pool_.state(id, host) == memory::CopyState::kAbsent) stats_.host_bytes_in += pool_.copy_bytes(id, host);
    stats_.device_bytes_in += pool_.copy_bytes(id, dev);
  }
  device_rm_->apply(p, pool_, dev);  // failures surface again through the demand's acquire
  stats_.peak_tier_used_bytes = std::max(stats_.peak_tier_used_bytes, pool_.tier(dev).stats().bytes_used);
}

void BlockStreamer::run(std::int64_t k, const model::BlockBody& body, const std::function<void()>& check) {
  if (k < 0 || k >= num_steps()) {
    throw Error(ErrorCode::kBadRequest, "block streamer: step " + std::to_string(k) + " out of range (" +
                                            std::to_string(num_steps()) + " steps)");
  }
  const auto t0 = Clock::now();
  const WeightStore& store = *stores_[static_cast<std::size_t>(expert_of_step_[static_cast<std::size_t>(k)])];
  const int dev = opt_.device_tier, host = pool_.host_tier();
  const at::Device device = opt_.cuda_device < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, opt_.cuda_device);
  std::deque<HeldBlock> held;  // pinned blocks whose kernels may still run (oldest first)
  try {
    for (std::int64_t i = 0; i < layers_; ++i) {
      if (check) check();
      plan_and_apply(static_cast<std::size_t>(k * layers_ + i));
      const BlockBlob& b = store.block(i);
      const memory::CopyState st = pool_.state(b.id, dev);
      if (st != memory::CopyState::kReady && st != memory::CopyState::kLoading) {
        // The plan could not bring it (no room): a demand load.
        if (pool_.state(b.id, host) == memory::CopyState::kAbsent) stats_.host_bytes_in += pool_.copy_bytes(b.id, host);
        stats_.device_bytes_in += pool_.copy_bytes(b.id, dev);
      }
      const auto t_wait = Clock::now();
      memory::RequestOptions ro;
      ro.urgent = true;
      memory::PinnedCopy pin = pool_.acquire(b.id, dev, ro);
      const double w = seconds_since(t_wait);
      stats_.wait_s += w;
      stats_.max_block_wait_s = std::max(stats_.max_block_wait_s, w);
      stats_.block_wait_s.push_back(w);
      body(i, view_block_weights(b, pin.data(), device));
      held.push_back(HeldBlock{std::move(pin), ComputeFence::record(opt_.cuda_device)});
      // Unpin what the device has finished; block i-1 at the latest (the device still has
      // block i queued, so it does not idle).
      while (!held.empty() && (held.size() > 1 || held.front().fence.done())) {
        held.front().fence.wait();
        held.pop_front();
      }
      ++stats_.blocks_run;
    }
    for (HeldBlock& h : held) h.fence.wait();
    held.clear();
  } catch (...) {
    synchronize_device(opt_.cuda_device);  // no kernel may still read a slot we unpin
    throw;
  }
  ++stats_.steps;
  stats_.run_s += seconds_since(t0);
}

model::BlockLoop BlockStreamer::loop(std::int64_t k, std::function<void()> check) {
  return [this, k, check = std::move(check)](const model::BlockBody& body) { run(k, body, check); };
}

nlohmann::json BlockStreamer::stats_json() const {
  return {{"tier", pool_.tier(opt_.device_tier).name()},
          {"steps", stats_.steps},
          {"blocks_run", stats_.blocks_run},
          {"device_bytes_in", stats_.device_bytes_in},
          {"host_bytes_in", stats_.host_bytes_in},
          {"host_planning", host_rm_ != nullptr},
          {"peak_tier_used_bytes", stats_.peak_tier_used_bytes},
          {"tier_capacity_bytes", pool_.tier(opt_.device_tier).bytes_capacity()},
          {"wait_s", stats_.wait_s},
          {"max_block_wait_s", stats_.max_block_wait_s},
          {"run_s", stats_.run_s},
          {"window_bytes", window_}};
}

}  // namespace wand::sched::exec
