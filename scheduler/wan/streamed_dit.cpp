#include "scheduler/wan/streamed_dit.h"

#include <algorithm>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/dit_executor.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/multigpu/parallel_runner.h"

namespace wand::sched {

namespace {

at::Device device_of(int cuda_device) {
  return cuda_device < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_device));
}

}  // namespace

std::string StreamedDit::who() const { return "streamed DiT '" + opt_.name + "'"; }

std::string StreamedDit::rank_who(int q) const {
  const int tier = opt_.ranks[static_cast<std::size_t>(q)].device_tier;
  if (num_ranks() == 1) return who() + " on device tier " + pool_.tier(tier).name();
  return who() + " rank " + std::to_string(q) + " (tier " + pool_.tier(tier).name() + ")";
}

StreamedDit::StreamedDit(memory::MemoryPool& pool, const std::vector<std::filesystem::path>& expert_dirs,
                         StreamedDitOptions options)
    : pool_(pool), opt_(std::move(options)) {
  if (expert_dirs.empty() || expert_dirs.size() > 2) {
    throw Error(ErrorCode::kBadRequest, who() + ": expected one or two expert directories, got " +
                                            std::to_string(expert_dirs.size()));
  }
  try {
    strategy_ = parse_strategy(opt_.strategy);
  } catch (const Error& e) {
    throw Error(ErrorCode::kConfig, who() + ": " + e.what());
  }
  const int n = num_ranks();
  if (n != strategy_.ranks()) {
    throw Error(ErrorCode::kConfig, who() + ": strategy " + strategy_.name() + " needs " +
                                        std::to_string(strategy_.ranks()) + " cards, the group has " +
                                        std::to_string(n));
  }
  for (int q = 0; q < n; ++q) {
    const int t = opt_.ranks[static_cast<std::size_t>(q)].device_tier;
    if (t < 0 || static_cast<std::size_t>(t) >= pool_.tier_count() || t == pool_.host_tier() ||
        t == pool_.disk_tier()) {
      throw Error(ErrorCode::kConfig, who() + ": rank " + std::to_string(q) + " names tier " + std::to_string(t) +
                                          ", not a device tier of the pool (" + std::to_string(pool_.tier_count()) +
                                          " tiers)");
    }
    for (int p = 0; p < q; ++p) {
      if (opt_.ranks[static_cast<std::size_t>(p)].device_tier == t) {
        throw Error(ErrorCode::kConfig, who() + ": ranks " + std::to_string(p) + " and " + std::to_string(q) +
                                            " both name device tier " + std::to_string(t));
      }
    }
  }
  if (opt_.stores != nullptr && &opt_.stores->pool() != &pool_) {
    throw Error(ErrorCode::kConfig, who() + ": its store cache is over another memory pool");
  }
  dits_.resize(static_cast<std::size_t>(n));
  for (std::size_t e = 0; e < expert_dirs.size(); ++e) {
    const model::CheckpointDir ck(expert_dirs[e]);
    const std::int64_t heads = ck.config().num_heads;
    if (heads % strategy_.seq_degree != 0) {
      throw Error(ErrorCode::kConfig, who() + ": num_heads " + std::to_string(heads) + " of " +
                                          expert_dirs[e].string() + " does not divide by the Ulysses degree " +
                                          std::to_string(strategy_.seq_degree) + " of " + strategy_.name());
    }
    for (int q = 0; q < n; ++q) {
      const int cuda = opt_.ranks[static_cast<std::size_t>(q)].cuda_device;
      dits_[static_cast<std::size_t>(q)].push_back(std::make_unique<model::WanDit>(
          model::WanDit::load(ck, opt_.run, device_of(cuda), /*load_blocks=*/false)));
    }
    exec::WeightStoreOptions wo;
    wo.run = opt_.run;
    wo.pack_dir = opt_.pack_dir;
    wo.weights = opt_.weights;
    wo.name = expert_dirs.size() == 1 ? opt_.name : opt_.name + (e == 0 ? ".hi" : ".lo");
    if (opt_.stores != nullptr) {
      stores_.push_back(opt_.stores->get(ck, wo));  // shared (Note [Shared weight stores])
    } else {
      stores_.push_back(std::make_shared<exec::WeightStore>(exec::WeightStore::open(ck, pool_, wo)));
    }
    nonblock_bytes_ += exec::dit_nonblock_bytes(ck, opt_.run);
    if (e > 0 && dits_[0][e]->num_layers() != dits_[0][0]->num_layers()) {
      throw Error(ErrorCode::kModelFormat, who() + ": experts differ in depth (" +
                                               std::to_string(dits_[0][0]->num_layers()) + " and " +
                                               std::to_string(dits_[0][e]->num_layers()) + " blocks)");
    }
  }
  chunks_.assign(static_cast<std::size_t>(n), 0);
  capped_.assign(static_cast<std::size_t>(n), false);
  log::get("sched")->info(
      "streamed dit name={} strategy={} ranks={} experts={} layers={} block={} nonblock={} tier={} direct={} "
      "shared={}",
      opt_.name, strategy_.name(), n, stores_.size(), dits_[0][0]->num_layers(), format_bytes(max_block_bytes(0)),
      format_bytes(nonblock_bytes_), pool_.tier(opt_.ranks[0].device_tier).name(), stores_[0]->direct(),
      opt_.stores != nullptr);
}

StreamedDit::~StreamedDit() { end_job(); }

std::uint64_t StreamedDit::max_block_bytes(int rank) const {
  const int tier = opt_.ranks.at(static_cast<std::size_t>(rank)).device_tier;
  std::uint64_t m = 0;
  for (const auto& s : stores_) {
    for (const exec::BlockBlob& b : s->blocks()) m = std::max(m, pool_.copy_bytes(b.id, tier));
  }
  return m;
}

std::vector<exec::CardJobBudget> StreamedDit::plan_job(std::int64_t seq_len, bool uncond,
                                                     std::uint64_t lora_bytes) const {
  const model::WanConfig& cfg = dits_[0][0]->config();
  const int n = num_ranks(), S = strategy_.seq_degree;
  std::vector<exec::CardJobBudget> out;
  for (int q = 0; q < n; ++q) {  // Note [Streamed budget]
    const StreamedDitRank& r = opt_.ranks[static_cast<std::size_t>(q)];
    exec::DitGeometry g;
    g.tokens = (seq_len + S - 1) / S;  // this rank's share of the sequence
    g.dim = cfg.dim;
    g.ffn_dim = cfg.ffn_dim;
    g.text_len = cfg.text_len;
    g.run_bytes = static_cast<int>(c10::elementSize(model::gemm_dtype(opt_.run)));
    // One residual stream on this card when the branches run on two cards, when spilled, or
    // when no step has an uncond branch (guidance 1: the spill is moot).
    g.spill_uncond = !uncond || strategy_.cfg_split() || (n == 1 && opt_.spill_uncond == 1);
    const bool one = n == 1;
    const std::string share =
        one ? "" : " (its share: " + std::to_string(g.tokens) + " of " + std::to_string(seq_len) + " tokens)";
    const std::string tokens_text =
        one ? std::to_string(seq_len) + " tokens" : std::to_string(g.tokens) + " of " + std::to_string(seq_len) + " tokens";
    out.push_back(exec::plan_card_job(rank_who(q), r.budget, pool_.tier(r.device_tier).bytes_capacity(),
                                      max_block_bytes(q), opt_.window_bytes, nonblock_bytes_ + lora_bytes, g,
                                      opt_.chunk_tokens,
                                      /*spill_fallback=*/one && opt_.spill_uncond == -1, share, tokens_text));
  }
  return out;
}

void StreamedDit::begin_job(std::vector<int> expert_of_step, exec::StreamedJob job) {
  end_job();
  for (std::size_t j = 0; j < expert_of_step.size(); ++j) {
    const int e = expert_of_step[j];
    if (e < 0 || static_cast<std::size_t>(e) >= stores_.size()) {
      throw Error(ErrorCode::kInternal, who() + ": step " + std::to_string(job.first_step + j) + " names expert " +
                                            std::to_string(e) + " of " + std::to_string(stores_.size()));
    }
  }
  const int n = num_ranks();
  const std::vector<exec::CardJobBudget> cbs = plan_job(job.seq_len, job.uncond, job.lora_bytes);
  const std::uint64_t nonblock = nonblock_bytes_ + job.lora_bytes;  // the LoRAs sit beside them
  std::uint64_t window = cbs[0].window;
  for (const exec::CardJobBudget& cb : cbs) window = std::min(window, cb.window);
  for (int q = 0; q < n; ++q) {
    for (auto& d : dits_[static_cast<std::size_t>(q)]) d->set_chunk_tokens(cbs[static_cast<std::size_t>(q)].chunk);
  }

  // Shared stores: register the job (Note [Shared stores and host planning], store_cache.h).
  exec::StoreCache::JobLease lease;
  bool host_planning = opt_.host_window_bytes > 0;
  std::vector<const exec::WeightStore*> used;
  for (const auto& s : stores_) used.push_back(s.get());
  if (opt_.stores != nullptr) {
    lease = opt_.stores->begin_job(used, host_planning, opt_.name);
    host_planning = lease.host_planning();
  }
  const std::uint64_t host_window = host_planning ? opt_.host_window_bytes : 0;
  const std::size_t steps = expert_of_step.size();
  const char* collectives = "none";
  if (n == 1) {
    const exec::CardJobBudget& cb = cbs[0];
    const StreamedDitRank& r = opt_.ranks[0];
    exec::DeviceBudget b = r.budget;
    b.slot_bytes = cb.slots;
    // check_device_budget counts context + slots + activation cap; the non-block weights live
    // inside LibTorch's allocator, next to the activations.
    if (b.activation_bytes == 0 && b.budget_bytes > 0) b.activation_bytes = cb.room + nonblock;
    std::vector<exec::ExecutorExpert> ex;
    for (std::size_t e = 0; e < stores_.size(); ++e) ex.push_back({dits_[0][e].get(), stores_[e].get()});
    exec::ExecutorOptions eo;
    eo.device_tier = r.device_tier;
    eo.cuda_device = r.cuda_device;
    eo.window_bytes = window;
    eo.host_window_bytes = host_window;
    eo.budget = b;
    eo.spill_uncond = cb.spill_uncond && job.uncond;  // nothing to spill at guidance 1
    eo.activation_need_bytes = cb.need > 0 ? cb.need + (r.budget.activation_bytes > 0 ? 0 : nonblock) : 0;
    exec_ = std::make_unique<exec::DitExecutor>(pool_, std::move(ex), expert_of_step, eo);
  } else {
    std::vector<ParallelRank> ranks;
    bool all_cuda = true;
    for (int q = 0; q < n; ++q) {
      const StreamedDitRank& r = opt_.ranks[static_cast<std::size_t>(q)];
      ParallelRank pr;
      pr.device_tier = r.device_tier;
      pr.cuda_device = r.cuda_device;
      for (const auto& d : dits_[static_cast<std::size_t>(q)]) pr.dits.push_back(d.get());
      ranks.push_back(std::move(pr));
      all_cuda = all_cuda && r.cuda_device >= 0;
    }
    GroupFactory make_group = fake_group_factory();
    collectives = "fake";
#ifdef WAND_HAVE_NCCL
    if (all_cuda) {
      make_group = nccl_group_factory();
      collectives = "nccl";
    }
#endif
    (void)all_cuda;  // CPU ranks, or a build without NCCL: FakeCollective
    runner_ = std::make_unique<ParallelDitRunner>(pool_, used, expert_of_step, std::move(ranks), strategy_,
                                                  make_group, window, host_window);
  }
  for (int q = 0; q < n; ++q) {
    const StreamedDitRank& r = opt_.ranks[static_cast<std::size_t>(q)];
    if (r.cuda_device >= 0 && cbs[static_cast<std::size_t>(q)].room > 0) {
      exec::cap_caching_allocator(r.cuda_device, nonblock + cbs[static_cast<std::size_t>(q)].room);
      capped_[static_cast<std::size_t>(q)] = true;
    }
    chunks_[static_cast<std::size_t>(q)] = cbs[static_cast<std::size_t>(q)].chunk;
  }
  lease_ = std::move(lease);
  host_planning_ = host_planning;
  expert_of_step_ = std::move(expert_of_step);
  first_step_ = job.first_step;
  spill_ = n == 1 && cbs[0].spill_uncond && job.uncond;
  activation_need_ = cbs[0].need;
  activation_room_ = cbs[0].room;
  ++jobs_;
  log::get("sched")->info(
      "streamed dit job name={} strategy={} first_step={} steps={} tokens={} uncond={} chunk={} spill_uncond={} "
      "act_need={} room={} window={} host_planning={} collectives={}",
      opt_.name, strategy_.name(), first_step_, steps, job.seq_len, job.uncond, chunks_[0], spill_, format_bytes(activation_need_),
      format_bytes(activation_room_), format_bytes(window), host_planning_, collectives);
}

void StreamedDit::end_job() {
  if (!in_job()) return;
  if (exec_) {
    const exec::ExecutorStats& s = exec_->stats();
    last_job_ = exec_->stats_json();
    total_device_bytes_in_ += s.device_bytes_in;
    total_host_bytes_in_ += s.host_bytes_in;
    total_steps_ += s.steps;
    exec_.reset();
  }
  if (runner_) {
    last_job_ = runner_->stats_json();
    for (int q = 0; q < runner_->num_ranks(); ++q) {
      const exec::BlockStreamerStats& s = runner_->streamer(q).stats();
      total_device_bytes_in_ += s.device_bytes_in;
      total_host_bytes_in_ += s.host_bytes_in;
      if (q == 0) total_steps_ += s.steps;
    }
    runner_.reset();
  }
  lease_ = exec::StoreCache::JobLease();  // after the executor: its pins are gone
  // The cap is the denoising steps' budget; the VAE decode after them may use what the card
  // has free (the weight slots stay allocated by the pool either way).
  for (int q = 0; q < num_ranks(); ++q) {
    const int cuda = opt_.ranks[static_cast<std::size_t>(q)].cuda_device;
    if (cuda >= 0 && capped_[static_cast<std::size_t>(q)]) {
      const exec::DeviceMemInfo m = exec::device_mem_info(cuda);
      if (m.valid) exec::cap_caching_allocator(cuda, m.total_bytes);
      capped_[static_cast<std::size_t>(q)] = false;
    }
  }
}

model::CfgForwardFn StreamedDit::cfg_forward() {
  return [this](const model::StepForwardInputs& in, const model::CancelCheck& check) { return forward(in, check); };
}

std::pair<at::Tensor, at::Tensor> StreamedDit::forward(const model::StepForwardInputs& in,
                                                       const model::CancelCheck& check) {
  if (!in_job()) throw Error(ErrorCode::kInternal, who() + ": a step ran outside a job (no begin_job)");
  const std::int64_t k = exec::checked_schedule_index(
      who(), in, first_step_, static_cast<std::int64_t>(expert_of_step_.size()), stores_.size(),
      [this](std::int64_t i) { return expert_of_step_[static_cast<std::size_t>(i)]; });
  const exec::StepInputs s = exec::step_inputs_of(in);
  if (exec_) return exec_->step_checked(k, s, check);  // the check between blocks
  if (in.lora != nullptr) {
    throw Error(ErrorCode::kBadRequest, who() + ": LoRAs run on one card only for now (strategy " + strategy_.name() +
                                            " spans " + std::to_string(num_ranks()) + " cards)");
  }
  if (check) check();  // Note [Group cancel]: at step boundaries only
  auto out = runner_->step(k, s);
  if (check) check();
  return out;
}

nlohmann::json StreamedDit::stats_json() const {
  nlohmann::json stores = nlohmann::json::array();
  for (const auto& s : stores_) stores.push_back(s->status_json());
  nlohmann::json j = {{"name", opt_.name},
                      {"strategy", strategy_.name()},
                      {"ranks", num_ranks()},
                      {"experts", stores_.size()},
                      {"stores", stores},
                      {"max_block_bytes", max_block_bytes(0)},
                      {"nonblock_bytes", nonblock_bytes_},
                      {"chunk_tokens", chunks_[0]},
                      {"chunk_tokens_per_rank", chunks_},
                      {"spill_uncond", spill_},
                      {"shared_stores", opt_.stores != nullptr},
                      {"host_planning", host_planning_},
                      {"activation_need_bytes", activation_need_},
                      {"activation_room_bytes", activation_room_},
                      {"jobs", jobs_},
                      {"in_job", in_job()}};
  std::uint64_t dev_in = total_device_bytes_in_, host_in = total_host_bytes_in_, steps = total_steps_;
  if (exec_) {
    j["job"] = exec_->stats_json();
    dev_in += exec_->stats().device_bytes_in;
    host_in += exec_->stats().host_bytes_in;
    steps += exec_->stats().steps;
  } else if (runner_) {
    j["job"] = runner_->stats_json();
    for (int q = 0; q < runner_->num_ranks(); ++q) {
      const exec::BlockStreamerStats& s = runner_->streamer(q).stats();
      dev_in += s.device_bytes_in;
      host_in += s.host_bytes_in;
      if (q == 0) steps += s.steps;
    }
  } else {
    j["job"] = last_job_;
  }
  j["total"] = {{"steps", steps}, {"device_bytes_in", dev_in}, {"host_bytes_in", host_in}};
  return j;
}

}  // namespace wand::sched
