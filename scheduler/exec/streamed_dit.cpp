#include "scheduler/exec/streamed_dit.h"

#include <algorithm>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/dit_executor.h"
#include "scheduler/exec/weight_store.h"

namespace wand::sched::exec {

// Note [Non-block bytes]: the non-block weights as WanDit holds them: the patch and text
// embeddings in the run dtype, the time MLP, time projection and head in fp32 (dit.h,
// Note [DiT precision islands]). Counted from the checkpoint's shapes, not measured; on
// CUDA the allocator's reserved bytes after loading are the measured figure.
std::uint64_t dit_nonblock_bytes(const model::CheckpointDir& ck, model::RunDtype run) {
  const std::uint64_t run_bytes = c10::elementSize(model::gemm_dtype(run));
  std::uint64_t total = 0;
  for (const std::string& n : ck.names()) {
    if (n.rfind("blocks.", 0) == 0) continue;
    const bool run_dtype = n.rfind("patch_embedding", 0) == 0 || n.rfind("text_embedding", 0) == 0;
    total += static_cast<std::uint64_t>(ck.info(n).numel()) * (run_dtype ? run_bytes : 4);
  }
  return total;
}

StreamedDit::StreamedDit(memory::MemoryPool& pool, const std::vector<std::filesystem::path>& expert_dirs,
                         StreamedDitOptions options)
    : pool_(pool), opt_(std::move(options)) {
  if (expert_dirs.empty() || expert_dirs.size() > 2) {
    throw Error(ErrorCode::kBadRequest, "streamed DiT: expected one or two expert directories, got " +
                                            std::to_string(expert_dirs.size()));
  }
  const int dev = opt_.device_tier;
  if (dev < 0 || static_cast<std::size_t>(dev) >= pool_.tier_count() || dev == pool_.host_tier() ||
      dev == pool_.disk_tier()) {
    throw Error(ErrorCode::kConfig, "streamed DiT: tier " + std::to_string(dev) + " is not a device tier of the pool");
  }
  if (opt_.stores != nullptr && &opt_.stores->pool() != &pool_) {
    throw Error(ErrorCode::kConfig, "streamed DiT '" + opt_.name + "': its store cache is over another memory pool");
  }
  const at::Device device = opt_.cuda_device < 0 ? at::Device(at::kCPU)
                                                 : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(opt_.cuda_device));
  for (std::size_t e = 0; e < expert_dirs.size(); ++e) {
    const model::CheckpointDir ck(expert_dirs[e]);
    dits_.push_back(std::make_unique<model::WanDit>(model::WanDit::load(ck, opt_.run, device, /*load_blocks=*/false)));
    WeightStoreOptions wo;
    wo.run = opt_.run;
    wo.pack_dir = opt_.pack_dir;
    wo.name = expert_dirs.size() == 1 ? opt_.name : opt_.name + (e == 0 ? ".hi" : ".lo");
    if (opt_.stores != nullptr) {
      stores_.push_back(opt_.stores->get(ck, wo));  // shared (Note [Shared weight stores])
    } else {
      stores_.push_back(std::make_shared<WeightStore>(WeightStore::open(ck, pool_, wo)));
    }
    nonblock_bytes_ += dit_nonblock_bytes(ck, opt_.run);
    if (e > 0 && dits_[e]->num_layers() != dits_[0]->num_layers()) {
      throw Error(ErrorCode::kModelFormat, "streamed DiT: experts differ in depth (" +
                                               std::to_string(dits_[0]->num_layers()) + " and " +
                                               std::to_string(dits_[e]->num_layers()) + " blocks)");
    }
  }
  log::get("sched")->info("streamed dit name={} experts={} layers={} block={} nonblock={} tier={} direct={} shared={}",
                          opt_.name, dits_.size(), dits_[0]->num_layers(), format_bytes(max_block_bytes()),
                          format_bytes(nonblock_bytes_), pool_.tier(dev).name(), stores_[0]->direct(),
                          opt_.stores != nullptr);
}

StreamedDit::~StreamedDit() { end_job(); }

std::int64_t checked_schedule_index(const std::string& who, const model::StepForwardInputs& in,
                                    std::int64_t first_step, std::int64_t num_steps, std::size_t experts,
                                    const std::function<int(std::int64_t)>& planned) {
  const std::int64_t k = in.step - first_step;
  if (k < 0 || k >= num_steps) {
    throw Error(ErrorCode::kInternal, who + ": generator step " + std::to_string(in.step) +
                                          " is outside the job's schedule (steps " + std::to_string(first_step) +
                                          ".." + std::to_string(first_step + num_steps - 1) + ")");
  }
  const int want = (experts == 1 || in.high_noise) ? 0 : 1;
  const int plan = planned(k);
  if (plan != want) {
    throw Error(ErrorCode::kInternal, who + ": step " + std::to_string(in.step) + " runs expert " +
                                          std::to_string(want) + " but the schedule planned " + std::to_string(plan));
  }
  return k;
}

StepInputs step_inputs_of(const model::StepForwardInputs& in) {
  StepInputs s;
  s.x = in.x;
  s.t = in.t;
  s.context = in.context;
  s.context_null = in.context_null;
  s.seq_len = in.seq_len;
  s.y = in.y;
  return s;
}

CardJobBudget plan_card_job(const std::string& who, const DeviceBudget& budget, std::uint64_t tier_capacity,
                            std::uint64_t max_block, std::uint64_t window_bytes, std::uint64_t nonblock_bytes,
                            DitGeometry g, std::int64_t chunk_tokens, bool spill_fallback,
                            const std::string& share, const std::string& tokens_text) {
  CardJobBudget r;
  r.slots = budget.slot_bytes > 0 ? budget.slot_bytes : tier_capacity;
  if (r.slots < 2 * max_block) {
    throw Error(ErrorCode::kConfig, who + " has " + format_bytes(r.slots) + " of weight slots (" +
                                        std::to_string(r.slots) + " bytes) but streaming needs two blocks of " +
                                        format_bytes(max_block) + " (" + std::to_string(max_block) +
                                        " bytes each: the block running and the next) = " + format_bytes(2 * max_block));
  }
  // Window: two blocks ahead when the slots hold three (window + the block being released).
  r.window = window_bytes > 0 ? window_bytes : (r.slots >= 3 * max_block ? 2 * max_block : max_block);
  r.room = budget.activation_bytes;
  if (r.room == 0 && budget.budget_bytes > 0) {
    const std::uint64_t fixed = budget.context_bytes + r.slots + nonblock_bytes;
    if (fixed >= budget.budget_bytes) {
      throw Error(ErrorCode::kConfig, who + ": device budget " + format_bytes(budget.budget_bytes) +
                                          " leaves no room for activations: context " +
                                          format_bytes(budget.context_bytes) + " + weight slots " +
                                          format_bytes(r.slots) + " + non-block weights " +
                                          format_bytes(nonblock_bytes) + " = " + format_bytes(fixed));
    }
    r.room = budget.budget_bytes - fixed;
  }
  if (chunk_tokens >= 0) {
    r.chunk = chunk_tokens;
  } else if (r.room > 0 && g.tokens > 0) {
    try {
      r.chunk = choose_chunk_tokens(g, r.room);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kConfig || g.spill_uncond || !spill_fallback) {
        if (share.empty()) throw;
        throw Error(e.code(), who + ": " + e.what() + share);
      }
      g.spill_uncond = true;  // one fp32 stream on the device between blocks
      try {
        r.chunk = choose_chunk_tokens(g, r.room);
      } catch (const Error& e2) {
        throw Error(ErrorCode::kConfig, who + ": " + e2.what() + " (with the uncond stream spilled to host)" + share);
      }
    }
  }
  g.chunk_tokens = r.chunk;
  r.spill_uncond = g.spill_uncond;
  r.need = (r.room > 0 && g.tokens > 0) ? dit_activation_bytes(g) : 0;
  if (r.need > r.room) {
    throw Error(ErrorCode::kConfig, who + ": activation room " + format_bytes(r.room) +
                                        " is below the estimated activation peak " + format_bytes(r.need) + " (" +
                                        tokens_text + ", chunk " + std::to_string(r.chunk) + ")");
  }
  return r;
}

std::uint64_t StreamedDit::max_block_bytes() const {
  std::uint64_t m = 0;
  for (const auto& s : stores_) {
    for (const BlockBlob& b : s->blocks()) m = std::max(m, pool_.copy_bytes(b.id, opt_.device_tier));
  }
  return m;
}

CardJobBudget StreamedDit::plan_job(std::int64_t seq_len) const {
  const int dev = opt_.device_tier;
  const model::WanConfig& cfg = dits_[0]->config();
  DitGeometry g;
  g.tokens = seq_len;
  g.dim = cfg.dim;
  g.ffn_dim = cfg.ffn_dim;
  g.text_len = cfg.text_len;
  g.run_bytes = static_cast<int>(c10::elementSize(model::gemm_dtype(opt_.run)));
  g.spill_uncond = opt_.spill_uncond == 1;
  return plan_card_job("streamed DiT '" + opt_.name + "' on device tier " + pool_.tier(dev).name(), opt_.budget,
                       pool_.tier(dev).bytes_capacity(), max_block_bytes(), opt_.window_bytes, nonblock_bytes_, g,
                       opt_.chunk_tokens, opt_.spill_uncond == -1, "", std::to_string(seq_len) + " tokens");
}

void StreamedDit::begin_job(std::vector<int> expert_of_step, StreamedJob job) {
  end_job();
  for (std::size_t j = 0; j < expert_of_step.size(); ++j) {
    const int e = expert_of_step[j];
    if (e < 0 || static_cast<std::size_t>(e) >= dits_.size()) {
      throw Error(ErrorCode::kInternal, "streamed DiT: step " + std::to_string(job.first_step + j) + " names expert " +
                                            std::to_string(e) + " of " + std::to_string(dits_.size()));
    }
  }
  const int dev = opt_.device_tier;
  const CardJobBudget cb = plan_job(job.seq_len);
  const std::uint64_t window = cb.window, room = cb.room, need = cb.need;
  const std::int64_t chunk = cb.chunk;
  DeviceBudget b = opt_.budget;
  b.slot_bytes = cb.slots;
  // check_device_budget counts context + slots + activation cap; the non-block weights live
  // inside LibTorch's allocator, next to the activations.
  if (b.activation_bytes == 0 && b.budget_bytes > 0) b.activation_bytes = room + nonblock_bytes_;
  for (auto& d : dits_) d->set_chunk_tokens(chunk);

  std::vector<ExecutorExpert> ex;
  for (std::size_t e = 0; e < dits_.size(); ++e) ex.push_back({dits_[e].get(), stores_[e].get()});
  // Shared stores: register the job (Note [Shared stores and host planning], store_cache.h).
  StoreCache::JobLease lease;
  bool host_planning = opt_.host_window_bytes > 0;
  if (opt_.stores != nullptr) {
    std::vector<const WeightStore*> used;
    for (const auto& s : stores_) used.push_back(s.get());
    lease = opt_.stores->begin_job(used, host_planning, opt_.name);
    host_planning = lease.host_planning();
  }
  ExecutorOptions eo;
  eo.device_tier = dev;
  eo.cuda_device = opt_.cuda_device;
  eo.window_bytes = window;
  eo.host_window_bytes = host_planning ? opt_.host_window_bytes : 0;
  eo.budget = b;
  eo.spill_uncond = cb.spill_uncond;
  eo.activation_need_bytes = need > 0 ? need + (opt_.budget.activation_bytes > 0 ? 0 : nonblock_bytes_) : 0;
  exec_ = std::make_unique<DitExecutor>(pool_, std::move(ex), std::move(expert_of_step), eo);
  if (opt_.cuda_device >= 0 && room > 0) {
    cap_caching_allocator(opt_.cuda_device, nonblock_bytes_ + room);
    capped_ = true;
  }
  lease_ = std::move(lease);
  host_planning_ = host_planning;
  first_step_ = job.first_step;
  chunk_ = chunk;
  spill_ = cb.spill_uncond;
  activation_need_ = need;
  activation_room_ = room;
  ++jobs_;
  log::get("sched")->info(
      "streamed dit job name={} first_step={} steps={} tokens={} chunk={} spill_uncond={} act_need={} room={} "
      "host_planning={}",
      opt_.name, first_step_, exec_->num_steps(), job.seq_len, chunk, spill_, format_bytes(need), format_bytes(room),
      host_planning_);
}

void StreamedDit::end_job() {
  if (!exec_) return;
  const ExecutorStats& s = exec_->stats();
  last_job_ = exec_->stats_json();
  total_device_bytes_in_ += s.device_bytes_in;
  total_host_bytes_in_ += s.host_bytes_in;
  total_steps_ += s.steps;
  exec_.reset();
  lease_ = StoreCache::JobLease();  // after the executor: its pins are gone
  // The cap is the denoising steps' budget; the VAE decode after them may use what the
  // card has free (the weight slots stay allocated by the pool either way).
  if (opt_.cuda_device >= 0 && capped_) {
    const DeviceMemInfo m = device_mem_info(opt_.cuda_device);
    if (m.valid) cap_caching_allocator(opt_.cuda_device, m.total_bytes);
    capped_ = false;
  }
}

model::CfgForwardFn StreamedDit::cfg_forward() {
  return [this](const model::StepForwardInputs& in, const model::CancelCheck& check) { return forward(in, check); };
}

std::pair<at::Tensor, at::Tensor> StreamedDit::forward(const model::StepForwardInputs& in,
                                                       const model::CancelCheck& check) {
  if (!exec_) {
    throw Error(ErrorCode::kInternal, "streamed DiT '" + opt_.name + "': a step ran outside a job (no begin_job)");
  }
  const std::int64_t k =
      checked_schedule_index("streamed DiT '" + opt_.name + "'", in, first_step_, exec_->num_steps(), dits_.size(),
                             [this](std::int64_t i) { return exec_->expert_of_step(i); });
  const StepInputs s = step_inputs_of(in);
  return exec_->step_checked(k, s, check);
}

nlohmann::json StreamedDit::stats_json() const {
  nlohmann::json stores = nlohmann::json::array();
  for (const auto& s : stores_) stores.push_back(s->status_json());
  nlohmann::json j = {{"name", opt_.name},
                      {"experts", dits_.size()},
                      {"stores", stores},
                      {"max_block_bytes", max_block_bytes()},
                      {"nonblock_bytes", nonblock_bytes_},
                      {"chunk_tokens", chunk_},
                      {"spill_uncond", spill_},
                      {"shared_stores", opt_.stores != nullptr},
                      {"host_planning", host_planning_},
                      {"activation_need_bytes", activation_need_},
                      {"activation_room_bytes", activation_room_},
                      {"jobs", jobs_},
                      {"in_job", exec_ != nullptr}};
  std::uint64_t dev_in = total_device_bytes_in_, host_in = total_host_bytes_in_, steps = total_steps_;
  if (exec_) {
    j["job"] = exec_->stats_json();
    dev_in += exec_->stats().device_bytes_in;
    host_in += exec_->stats().host_bytes_in;
    steps += exec_->stats().steps;
  } else {
    j["job"] = last_job_;
  }
  j["total"] = {{"steps", steps}, {"device_bytes_in", dev_in}, {"host_bytes_in", host_in}};
  return j;
}

}  // namespace wand::sched::exec
