#include "scheduler/exec/dit_executor.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/dit.h"
#include "model/lora.h"
#include "scheduler/cancel_token.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/weight_store.h"

namespace wand::sched::exec {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

// Note [Branch spill]: with spill_uncond, the uncond stream lives in a host blob of the
// pool between blocks: before its block it is copied to the device, after it back to host
// (the device then holds one fp32 stream between blocks instead of two). Cost: S x D x 4
// bytes each way per block per step (480p A14B: 640 MiB each way, ~52 ms at 25 GB/s,
// synchronous here). The copies are exact, so results are unchanged. The blob is the
// executor's, kept across steps (dropped with the executor).
class DitExecutor::Spill final : public model::BranchStash {
 public:
  Spill(DitExecutor& ex, at::Device device) : ex_(ex), device_(device) {}
  void put(const at::Tensor& h) override {
    const std::uint64_t bytes = static_cast<std::uint64_t>(h.numel()) * 4;
    memory::MemoryPool& pool = ex_.pool_;
    if (!host_.defined()) {
      if (ex_.spill_blob_ != 0 && ex_.spill_blob_bytes_ != bytes) {
        pool.drop_blob(ex_.spill_blob_);
        ex_.spill_blob_ = 0;
      }
      if (ex_.spill_blob_ == 0) {
        static std::atomic<unsigned> seq{0};
        ex_.spill_blob_ = pool.create_blob("executor.spill.uncond." + std::to_string(seq++), bytes);
        ex_.spill_blob_bytes_ = bytes;
      }
      pin_ = pool.acquire(ex_.spill_blob_, pool.host_tier());
      host_ = at::from_blob(pin_.data(), h.sizes(), at::TensorOptions().dtype(at::kFloat));
    }
    host_.copy_(h.to(at::kFloat));
    ex_.stats_.spill_bytes += bytes;
  }
  at::Tensor take() override {
    ex_.stats_.spill_bytes += static_cast<std::uint64_t>(host_.numel()) * 4;
    return device_.is_cpu() ? host_.clone() : host_.to(device_);
  }

 private:
  DitExecutor& ex_;
  at::Device device_;
  memory::PinnedCopy pin_;
  at::Tensor host_;  // view of the spill blob, [1, S, D] fp32
};

DitExecutor::DitExecutor(memory::MemoryPool& pool, std::vector<ExecutorExpert> experts,
                         std::vector<int> expert_of_step, ExecutorOptions options)
    : pool_(pool), experts_(std::move(experts)), opt_(options) {
  if (experts_.empty()) throw Error(ErrorCode::kBadRequest, "executor: no experts");
  std::int64_t layers = 0;
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
    if (e == 0) layers = x.dit->num_layers();
    if (x.dit->num_layers() != layers) throw Error(ErrorCode::kBadRequest, "executor: experts differ in depth");
  }
  check_expert_schedule(expert_of_step, experts_.size(), "executor");
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
  std::vector<const WeightStore*> stores;
  for (const ExecutorExpert& ex : experts_) stores.push_back(ex.store);
  BlockStreamerOptions so;
  so.device_tier = dev;
  so.cuda_device = opt_.cuda_device;
  so.window_bytes = opt_.window_bytes;
  so.host_window_bytes = opt_.host_window_bytes;
  so.budget = opt_.budget;
  so.activation_need_bytes = opt_.activation_need_bytes;
  streamer_ = std::make_unique<BlockStreamer>(pool_, std::move(stores), std::move(expert_of_step), so);
}

DitExecutor::~DitExecutor() {
  streamer_.reset();
  if (spill_blob_ != 0) {
    try {
      pool_.drop_blob(spill_blob_);
    } catch (const std::exception& e) {
      log::get("sched")->warn("executor: spill blob not dropped error=\"{}\"", e.what());
    }
  }
}

std::vector<at::Tensor> DitExecutor::run(std::int64_t k, const StepInputs& in, bool cfg,
                                         const std::function<void()>& check) {
  if (k < 0 || k >= num_steps()) {
    throw Error(ErrorCode::kBadRequest, "executor: step " + std::to_string(k) + " out of range (" +
                                            std::to_string(num_steps()) + " steps)");
  }
  const auto t_step = Clock::now();
  const model::WanDit& dit = *experts_[static_cast<std::size_t>(streamer_->expert_of_step(k))].dit;
  // Note [LoRA merge] (model/lora.h): the job's LoRAs merge into a per-block scratch between
  // the streamer's pin and the block; the slots keep the checkpoint's bytes.
  const model::BlockLoop blocks = model::with_lora(streamer_->loop(k, check), in.lora);
  std::vector<at::Tensor> out;
  try {
    if (cfg && in.uncond) {
      Spill spill(*this, dit.device());
      auto [c, u] = dit.forward_cfg(in.x, in.t, in.context, in.context_null, in.seq_len, in.y, blocks,
                                    opt_.spill_uncond ? &spill : nullptr);
      out.push_back(c);
      out.push_back(u);
    } else {
      out.push_back(dit.forward(in.x, in.t, in.context, in.seq_len, in.y, blocks));
      if (cfg) out.push_back(at::Tensor());  // guidance 1: no uncond branch
    }
  } catch (...) {
    static_cast<BlockStreamerStats&>(stats_) = streamer_->stats();
    throw;
  }
  synchronize_device(opt_.cuda_device);
  static_cast<BlockStreamerStats&>(stats_) = streamer_->stats();
  stats_.step_s += seconds_since(t_step);
  stats_.forwards += cfg && in.uncond ? 2 : 1;
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
          {"window_bytes", window_bytes()},
          {"spill_uncond", opt_.spill_uncond},
          {"spill_bytes", stats_.spill_bytes},
          {"forwards", stats_.forwards},
          {"allocator_reserved_bytes", opt_.cuda_device >= 0 ? caching_allocator_reserved(opt_.cuda_device) : 0},
          {"allocator_peak_reserved_bytes",
           opt_.cuda_device >= 0 ? caching_allocator_peak_reserved(opt_.cuda_device) : 0}};
}

}  // namespace wand::sched::exec
