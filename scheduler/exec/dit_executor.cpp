#include "scheduler/exec/dit_executor.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/dit.h"
#include "scheduler/cancel_token.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/weight_store.h"

namespace wand::sched::exec {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A pinned device copy of one block and the fence after the kernels that read it.
struct HeldBlock {
  memory::PinnedCopy pin;
  ComputeFence fence;
};

}  // namespace

DitExecutor::DitExecutor(memory::MemoryPool& pool, std::vector<ExecutorExpert> experts,
                         std::vector<int> expert_of_step, ExecutorOptions options)
    : pool_(pool), experts_(std::move(experts)), expert_of_step_(std::move(expert_of_step)), opt_(options) {
  if (experts_.empty()) throw Error(ErrorCode::kBadRequest, "executor: no experts");
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    const ExecutorExpert& x = experts_[e];
    if (x.dit == nullptr || x.store == nullptr) {
      throw Error(ErrorCode::kBadRequest, "executor: expert " + std::to_string(e) + " has no DiT or no weight store");
    }
    if (x.store->num_blocks() != x.dit->num_layers()) {
      throw Error(ErrorCode::kBadRequest, "executor: expert " + std::to_string(e) + " store has " +
                                              std::to_string(x.store->num_blocks()) + " blocks, its DiT " +
                                              std::to_string(x.dit->num_layers()));
    }
    if (e == 0) layers_ = x.dit->num_layers();
    if (x.dit->num_layers() != layers_) throw Error(ErrorCode::kBadRequest, "executor: experts differ in depth");
  }
  check_expert_schedule(expert_of_step_, experts_.size(), "executor");
  const int dev = opt_.device_tier;
  if (dev < 0 || static_cast<std::size_t>(dev) >= pool_.tier_count()) {
    throw Error(ErrorCode::kBadRequest, "executor: device tier " + std::to_string(dev) + " does not exist");
  }

  const bool host_addressable = pool_.tier(dev).host_addressable();
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    const at::Device d = experts_[e].dit->device();
    const bool ok = opt_.cuda_device < 0 ? (d.is_cpu() && host_addressable)
                                         : (d.is_cuda() && d.index() == opt_.cuda_device && !host_addressable);
    if (!ok) {
      throw Error(ErrorCode::kBadRequest,
                  "executor: expert " + std::to_string(e) + " runs on " + d.str() + " but the blocks come from tier " +
                      pool_.tier(dev).name() + " (" + (host_addressable ? "host memory" : "device memory") +
                      ") with cuda_device=" + std::to_string(opt_.cuda_device));
    }
  }

  {  // blocks take whole slots on the tiers this executor plans
    std::vector<const WeightStore*> stores;
    for (const ExecutorExpert& ex : experts_) stores.push_back(ex.store);
    reserve_block_slots(pool_, dev, stores);
    if (opt_.host_window_bytes > 0) reserve_block_slots(pool_, pool_.host_tier(), stores);
  }
  // The job's static schedule of block uses, on the device tier and on the host tier.
  std::vector<memory::ScheduleEntry> dev_sched, host_sched;
  std::uint64_t max_block = 0;
  for (int e : expert_of_step_) {
    for (std::int64_t i = 0; i < layers_; ++i) {
      const memory::BlobId id = experts_[static_cast<std::size_t>(e)].store->block(i).id;
      const std::uint64_t db = pool_.copy_bytes(id, dev);
      max_block = std::max(max_block, db);
      dev_sched.push_back({id, db});
      host_sched.push_back({id, pool_.copy_bytes(id, pool_.host_tier())});
    }
  }
  window_ = opt_.window_bytes > 0 ? opt_.window_bytes : 2 * max_block;
  window_ = std::max(window_, max_block);
  DeviceBudget b = opt_.budget;
  if (b.slot_bytes == 0) b.slot_bytes = pool_.tier(dev).bytes_capacity();
  check_device_budget(b, window_, max_block, opt_.activation_need_bytes);

  device_rm_ = std::make_unique<memory::ResidencyManager>(dev_sched, pool_.tier(dev).bytes_capacity(), window_);
  if (opt_.host_window_bytes > 0) {
    host_rm_ = std::make_unique<memory::ResidencyManager>(host_sched, pool_.tier(pool_.host_tier()).bytes_capacity(),
                                                          std::max(opt_.host_window_bytes, max_block));
  }
  log::get("sched")->info("executor steps={} layers={} window={} host_window={} slots={} block={}",
                          expert_of_step_.size(), layers_, format_bytes(window_),
                          format_bytes(opt_.host_window_bytes), format_bytes(b.slot_bytes), format_bytes(max_block));
}

DitExecutor::~DitExecutor() {
  if (spill_blob_ != 0) {
    try {
      pool_.drop_blob(spill_blob_);
    } catch (const std::exception& e) {
      log::get("sched")->warn("executor: spill blob not dropped error=\"{}\"", e.what());
    }
  }
}

void DitExecutor::plan_and_apply(std::size_t position) {
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
}

std::vector<at::Tensor> DitExecutor::run(std::int64_t k, const StepInputs& in, bool cfg,
                                         const std::function<void()>& check) {
  if (k < 0 || k >= num_steps()) {
    throw Error(ErrorCode::kBadRequest, "executor: step " + std::to_string(k) + " out of range (" +
                                            std::to_string(num_steps()) + " steps)");
  }
  const auto t_step = Clock::now();
  const ExecutorExpert& ex = experts_[static_cast<std::size_t>(expert_of_step_[static_cast<std::size_t>(k)])];
  const model::WanDit& dit = *ex.dit;
  const at::Device device = dit.device();
  const int dev = opt_.device_tier;

  model::DitInputs in_c = dit.embed(in.x, in.t, in.context, in.seq_len, in.y);
  model::DitInputs in_u;
  at::Tensor hc = in_c.tokens, hu;
  if (cfg) {
    in_u = in_c;
    in_u.context = dit.embed_text(in.context_null);
    hu = in_u.tokens;
  }

  // Note [Branch spill]: with spill_uncond, the uncond stream lives in a host blob of the
  // pool between blocks: before its block it is copied to the device, after it back to
  // host (the device then holds one fp32 stream between blocks instead of two). Cost:
  // S x D x 4 bytes each way per block per step (480p A14B: 640 MiB each way, ~52 ms
  // at 25 GB/s, synchronous here). The copies are exact, so results are unchanged.
  const bool spill = cfg && opt_.spill_uncond;
  memory::PinnedCopy spill_pin;
  at::Tensor hu_host;  // view of the spill blob, [1, S, D] fp32
  auto spill_out = [&](const at::Tensor& h) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(h.numel()) * 4;
    if (!hu_host.defined()) {
      if (spill_blob_ != 0 && spill_blob_bytes_ != bytes) {
        pool_.drop_blob(spill_blob_);
        spill_blob_ = 0;
      }
      if (spill_blob_ == 0) {
        static std::atomic<unsigned> seq{0};
        spill_blob_ = pool_.create_blob("executor.spill.uncond." + std::to_string(seq++), bytes);
        spill_blob_bytes_ = bytes;
      }
      spill_pin = pool_.acquire(spill_blob_, pool_.host_tier());
      hu_host = at::from_blob(spill_pin.data(), h.sizes(), at::TensorOptions().dtype(at::kFloat));
    }
    hu_host.copy_(h.to(at::kFloat));
    stats_.spill_bytes += bytes;
  };
  auto spill_in = [&]() {
    stats_.spill_bytes += static_cast<std::uint64_t>(hu_host.numel()) * 4;
    return device.is_cpu() ? hu_host.clone() : hu_host.to(device);
  };

  std::deque<HeldBlock> held;  // pinned blocks whose kernels may still run (oldest first)
  try {
    for (std::int64_t i = 0; i < layers_; ++i) {
      if (check) check();
      const std::size_t pos = static_cast<std::size_t>(k * layers_ + i);
      plan_and_apply(pos);
      const BlockBlob& b = ex.store->block(i);
      const bool had = pool_.state(b.id, dev) == memory::CopyState::kReady ||
                       pool_.state(b.id, dev) == memory::CopyState::kLoading;
      if (!had) {  // the plan could not bring it (no room): a demand load
        if (pool_.state(b.id, pool_.host_tier()) == memory::CopyState::kAbsent) {
          stats_.host_bytes_in += pool_.copy_bytes(b.id, pool_.host_tier());
        }
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

      const model::DitBlockWeights weights = view_block_weights(b, pin.data(), device);
      hc = dit.block(i, hc, in_c, weights);
      if (spill) {
        at::Tensor h = dit.block(i, i == 0 ? hu : spill_in(), in_u, weights);
        spill_out(h);
        hu = at::Tensor();
      } else if (cfg) {
        hu = dit.block(i, hu, in_u, weights);
      }
      held.push_back(HeldBlock{std::move(pin), ComputeFence::record(opt_.cuda_device)});
      // Unpin what the device has finished. Block i-1 is waited for here at the latest:
      // the device still has block i queued, so it does not idle, and while block i+1 is
      // planned only block i is pinned (the budget's "window + one block").
      while (!held.empty() && (held.size() > 1 || held.front().fence.done())) {
        held.front().fence.wait();
        held.pop_front();
      }
      ++stats_.blocks_run;
    }
  } catch (...) {
    synchronize_device(opt_.cuda_device);  // no kernel may still read a slot we unpin
    throw;
  }
  std::vector<at::Tensor> out;
  out.push_back(dit.head(hc, in_c));
  if (spill && layers_ > 0) hu = spill_in();
  if (cfg) out.push_back(dit.head(hu, in_u));
  for (HeldBlock& h : held) h.fence.wait();
  held.clear();
  synchronize_device(opt_.cuda_device);
  ++stats_.steps;
  stats_.step_s += seconds_since(t_step);
  return out;
}

namespace {
std::function<void()> token_check(const CancelToken* cancel) {
  if (cancel == nullptr) return {};
  return [cancel] { cancel->throw_if_cancelled(); };
}
}  // namespace

std::pair<at::Tensor, at::Tensor> DitExecutor::step(std::int64_t k, const StepInputs& in, const CancelToken* cancel) {
  std::vector<at::Tensor> o = run(k, in, true, token_check(cancel));
  return {o[0], o[1]};
}

std::pair<at::Tensor, at::Tensor> DitExecutor::step_checked(std::int64_t k, const StepInputs& in,
                                                            const std::function<void()>& check) {
  std::vector<at::Tensor> o = run(k, in, true, check);
  return {o[0], o[1]};
}

at::Tensor DitExecutor::forward(std::int64_t k, const StepInputs& in, const CancelToken* cancel) {
  return run(k, in, false, token_check(cancel))[0];
}

nlohmann::json DitExecutor::stats_json() const {
  return {{"steps", stats_.steps},
          {"blocks_run", stats_.blocks_run},
          {"device_bytes_in", stats_.device_bytes_in},
          {"host_bytes_in", stats_.host_bytes_in},
          {"wait_s", stats_.wait_s},
          {"max_block_wait_s", stats_.max_block_wait_s},
          {"step_s", stats_.step_s},
          {"compute_s", stats_.step_s - stats_.wait_s},
          {"window_bytes", window_},
          {"spill_uncond", opt_.spill_uncond},
          {"spill_bytes", stats_.spill_bytes},
          {"allocator_reserved_bytes", opt_.cuda_device >= 0 ? caching_allocator_reserved(opt_.cuda_device) : 0},
          {"allocator_peak_reserved_bytes",
           opt_.cuda_device >= 0 ? caching_allocator_peak_reserved(opt_.cuda_device) : 0}};
}

}  // namespace wand::sched::exec
