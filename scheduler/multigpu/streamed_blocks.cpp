#include "scheduler/multigpu/streamed_blocks.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "memory/residency_manager.h"
#include "model/dit.h"
#include "scheduler/cancel_token.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/weight_store.h"

namespace wand::sched {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct HeldBlock {
  memory::PinnedCopy pin;
  exec::ComputeFence fence;
};

}  // namespace

BlockLoop owned_block_loop(const model::WanDit& dit) {
  const model::WanDit* d = &dit;
  return [d](const BlockBody& body) {
    for (std::int64_t i = 0; i < d->num_layers(); ++i) body(i, d->block_weights(i));
  };
}

StreamedBlocks::StreamedBlocks(memory::MemoryPool& pool, std::vector<const exec::WeightStore*> stores,
                               std::vector<int> expert_of_step, StreamedBlocksOptions options)
    : pool_(pool), stores_(std::move(stores)), expert_of_step_(std::move(expert_of_step)), opt_(options) {
  if (stores_.empty()) throw Error(ErrorCode::kBadRequest, "streamed blocks: no weight stores");
  for (std::size_t e = 0; e < stores_.size(); ++e) {
    if (stores_[e] == nullptr) {
      throw Error(ErrorCode::kBadRequest, "streamed blocks: store " + std::to_string(e) + " is null");
    }
    if (e == 0) layers_ = stores_[e]->num_blocks();
    if (stores_[e]->num_blocks() != layers_) {
      throw Error(ErrorCode::kBadRequest, "streamed blocks: store " + std::to_string(e) + " has " +
                                              std::to_string(stores_[e]->num_blocks()) + " blocks, store 0 " +
                                              std::to_string(layers_));
    }
  }
  exec::check_expert_schedule(expert_of_step_, stores_.size(), "streamed blocks");
  const int dev = opt_.device_tier;
  if (dev < 0 || static_cast<std::size_t>(dev) >= pool_.tier_count() || dev == pool_.host_tier() ||
      dev == pool_.disk_tier()) {
    throw Error(ErrorCode::kBadRequest, "streamed blocks: tier " + std::to_string(dev) + " is not a device tier");
  }
  const bool host_addressable = pool_.tier(dev).host_addressable();
  if ((opt_.cuda_device < 0) != host_addressable) {
    throw Error(ErrorCode::kBadRequest, "streamed blocks: tier " + pool_.tier(dev).name() + " holds " +
                                            (host_addressable ? "host" : "device") +
                                            " memory but cuda_device=" + std::to_string(opt_.cuda_device));
  }
  exec::reserve_block_slots(pool_, dev, stores_);
  std::vector<memory::ScheduleEntry> sched;
  std::uint64_t max_block = 0;
  for (int e : expert_of_step_) {
    for (std::int64_t i = 0; i < layers_; ++i) {
      const memory::BlobId id = stores_[static_cast<std::size_t>(e)]->block(i).id;
      const std::uint64_t b = pool_.copy_bytes(id, dev);
      max_block = std::max(max_block, b);
      sched.push_back({id, b});
    }
  }
  window_ = std::max(opt_.window_bytes > 0 ? opt_.window_bytes : 2 * max_block, max_block);
  // Slots must hold the window plus the block being released (its kernels may still run).
  const std::uint64_t cap = pool_.tier(dev).bytes_capacity();
  if (!sched.empty() && cap < window_ + max_block) {
    throw Error(ErrorCode::kConfig, "streamed blocks: tier " + pool_.tier(dev).name() + " of " + format_bytes(cap) +
                                        " cannot hold the prefetch window " + format_bytes(window_) +
                                        " plus one block " + format_bytes(max_block));
  }
  rm_ = std::make_unique<memory::ResidencyManager>(sched, cap, window_);
  log::get("sched")->info("streamed blocks tier={} steps={} layers={} window={} slots={}", pool_.tier(dev).name(),
                          expert_of_step_.size(), layers_, format_bytes(window_), format_bytes(cap));
}

StreamedBlocks::~StreamedBlocks() = default;

void StreamedBlocks::plan_and_apply(std::size_t position) {
  const int dev = opt_.device_tier;
  memory::ResidencyPlan p = rm_->plan(position, pool_.resident(dev));
  for (memory::BlobId id : p.prefetch) stats_.device_bytes_in += pool_.copy_bytes(id, dev);
  rm_->apply(p, pool_, dev);  // failures surface again through the demand's acquire
  stats_.peak_tier_used_bytes = std::max(stats_.peak_tier_used_bytes, pool_.tier(dev).stats().bytes_used);
}

void StreamedBlocks::run(std::int64_t k, const BlockBody& body, const CancelToken* cancel) {
  if (k < 0 || k >= num_steps()) {
    throw Error(ErrorCode::kBadRequest, "streamed blocks: step " + std::to_string(k) + " out of range (" +
                                            std::to_string(num_steps()) + " steps)");
  }
  const auto t0 = Clock::now();
  const exec::WeightStore& store = *stores_[static_cast<std::size_t>(expert_of_step_[static_cast<std::size_t>(k)])];
  const int dev = opt_.device_tier;
  const at::Device device = opt_.cuda_device < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, opt_.cuda_device);
  std::deque<HeldBlock> held;  // pinned blocks whose kernels may still run (oldest first)
  try {
    for (std::int64_t i = 0; i < layers_; ++i) {
      if (cancel != nullptr) cancel->throw_if_cancelled();
      plan_and_apply(static_cast<std::size_t>(k * layers_ + i));
      const exec::BlockBlob& b = store.block(i);
      const memory::CopyState st = pool_.state(b.id, dev);
      if (st != memory::CopyState::kReady && st != memory::CopyState::kLoading) {
        stats_.device_bytes_in += pool_.copy_bytes(b.id, dev);  // a demand load
      }
      const auto t_wait = Clock::now();
      memory::RequestOptions ro;
      ro.urgent = true;
      memory::PinnedCopy pin = pool_.acquire(b.id, dev, ro);
      const double w = seconds_since(t_wait);
      stats_.wait_s += w;
      stats_.max_block_wait_s = std::max(stats_.max_block_wait_s, w);
      body(i, exec::view_block_weights(b, pin.data(), device));
      held.push_back(HeldBlock{std::move(pin), exec::ComputeFence::record(opt_.cuda_device)});
      while (!held.empty() && (held.size() > 1 || held.front().fence.done())) {
        held.front().fence.wait();
        held.pop_front();
      }
      ++stats_.blocks_run;
    }
    for (HeldBlock& h : held) h.fence.wait();
    held.clear();
  } catch (...) {
    exec::synchronize_device(opt_.cuda_device);  // no kernel may still read a slot we unpin
    throw;
  }
  ++stats_.steps;
  stats_.run_s += seconds_since(t0);
}

BlockLoop StreamedBlocks::loop(std::int64_t k, const CancelToken* cancel) {
  return [this, k, cancel](const BlockBody& body) { run(k, body, cancel); };
}

nlohmann::json StreamedBlocks::stats_json() const {
  return {{"tier", pool_.tier(opt_.device_tier).name()},
          {"steps", stats_.steps},
          {"blocks_run", stats_.blocks_run},
          {"device_bytes_in", stats_.device_bytes_in},
          {"peak_tier_used_bytes", stats_.peak_tier_used_bytes},
          {"tier_capacity_bytes", pool_.tier(opt_.device_tier).bytes_capacity()},
          {"wait_s", stats_.wait_s},
          {"max_block_wait_s", stats_.max_block_wait_s},
          {"run_s", stats_.run_s},
          {"window_bytes", window_}};
}

}  // namespace wand::sched
