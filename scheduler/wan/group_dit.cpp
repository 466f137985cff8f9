#include "scheduler/wan/group_dit.h"

#include <algorithm>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/multigpu/parallel_runner.h"

namespace wand::sched {

namespace {

at::Device device_of(int cuda_device) {
  return cuda_device < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_device));
}

}  // namespace

GroupDit::GroupDit(memory::MemoryPool& pool, const std::vector<std::filesystem::path>& expert_dirs,
                   GroupDitOptions options)
    : pool_(pool), opt_(std::move(options)) {
  const std::string who = "group DiT '" + opt_.name + "'";
  if (expert_dirs.empty() || expert_dirs.size() > 2) {
    throw Error(ErrorCode::kBadRequest, who + ": expected one or two expert directories, got " +
                                            std::to_string(expert_dirs.size()));
  }
  try {
    strategy_ = parse_strategy(opt_.strategy);
  } catch (const Error& e) {
    throw Error(ErrorCode::kConfig, who + ": " + e.what());
  }
  const int n = static_cast<int>(opt_.ranks.size());
  if (n != strategy_.ranks()) {
    throw Error(ErrorCode::kConfig, who + ": strategy " + strategy_.name() + " needs " +
                                        std::to_string(strategy_.ranks()) + " cards, the group has " +
                                        std::to_string(n));
  }
  for (int q = 0; q < n; ++q) {
    const int t = opt_.ranks[static_cast<std::size_t>(q)].device_tier;
    if (t < 0 || static_cast<std::size_t>(t) >= pool_.tier_count() || t == pool_.host_tier() ||
        t == pool_.disk_tier()) {
      throw Error(ErrorCode::kConfig, who + ": rank " + std::to_string(q) + " names tier " + std::to_string(t) +
                                          ", not a device tier of the pool (" + std::to_string(pool_.tier_count()) +
                                          " tiers)");
    }
    for (int p = 0; p < q; ++p) {
      if (opt_.ranks[static_cast<std::size_t>(p)].device_tier == t) {
        throw Error(ErrorCode::kConfig, who + ": ranks " + std::to_string(p) + " and " + std::to_string(q) +
                                            " both name device tier " + std::to_string(t));
      }
    }
  }
  if (opt_.stores != nullptr && &opt_.stores->pool() != &pool_) {
    throw Error(ErrorCode::kConfig, who + ": its store cache is over another memory pool");
  }
  dits_.resize(static_cast<std::size_t>(n));
  for (std::size_t e = 0; e < expert_dirs.size(); ++e) {
    const model::CheckpointDir ck(expert_dirs[e]);
    const std::int64_t heads = ck.config().num_heads;
    if (heads % strategy_.seq_degree != 0) {
      throw Error(ErrorCode::kConfig, who + ": num_heads " + std::to_string(heads) + " of " +
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
    wo.name = expert_dirs.size() == 1 ? opt_.name : opt_.name + (e == 0 ? ".hi" : ".lo");
    if (opt_.stores != nullptr) {
      stores_.push_back(opt_.stores->get(ck, wo));  // Note [Shared weight stores] (streamed_dit.h)
    } else {
      stores_.push_back(std::make_shared<exec::WeightStore>(exec::WeightStore::open(ck, pool_, wo)));
    }
    nonblock_bytes_ += exec::dit_nonblock_bytes(ck, opt_.run);
    if (e > 0 && dits_[0][e]->num_layers() != dits_[0][0]->num_layers()) {
      throw Error(ErrorCode::kModelFormat, who + ": experts differ in depth (" +
                                               std::to_string(dits_[0][0]->num_layers()) + " and " +
                                               std::to_string(dits_[0][e]->num_layers()) + " blocks)");
    }
  }
  chunks_.assign(static_cast<std::size_t>(n), 0);
  capped_.assign(static_cast<std::size_t>(n), false);
  log::get("sched")->info("group dit name={} strategy={} ranks={} experts={} layers={} nonblock={} shared={}",
                          opt_.name, strategy_.name(), n, stores_.size(), dits_[0][0]->num_layers(),
                          format_bytes(nonblock_bytes_), opt_.stores != nullptr);
}

GroupDit::~GroupDit() { end_job(); }

std::uint64_t GroupDit::max_block_bytes(int tier) const {
  std::uint64_t m = 0;
  for (const auto& s : stores_) {
    for (const exec::BlockBlob& b : s->blocks()) m = std::max(m, pool_.copy_bytes(b.id, tier));
  }
  return m;
}

void GroupDit::begin_job(std::vector<int> expert_of_step, exec::StreamedJob job) {
  end_job();
  const std::string who = "group DiT '" + opt_.name + "'";
  exec::check_expert_schedule(expert_of_step, stores_.size(), who);
  const int n = num_ranks();
  const model::WanConfig& cfg = dits_[0][0]->config();
  const int S = strategy_.seq_degree;
  std::uint64_t window = 0;
  std::vector<std::int64_t> chunks(static_cast<std::size_t>(n), 0);
  std::vector<std::uint64_t> rooms(static_cast<std::size_t>(n), 0);
  for (int q = 0; q < n; ++q) {  // Note [Group budget]
    const GroupDitRank& r = opt_.ranks[static_cast<std::size_t>(q)];
    const std::string rank = who + " rank " + std::to_string(q) + " (tier " + pool_.tier(r.device_tier).name() + ")";
    exec::DitGeometry g;
    g.tokens = (job.seq_len + S - 1) / S;  // this rank's share of the sequence
    g.dim = cfg.dim;
    g.ffn_dim = cfg.ffn_dim;
    g.text_len = cfg.text_len;
    g.run_bytes = static_cast<int>(c10::elementSize(model::gemm_dtype(opt_.run)));
    g.spill_uncond = strategy_.cfg_split();  // one residual stream on this card
    const std::string share =
        " (its share: " + std::to_string(g.tokens) + " of " + std::to_string(job.seq_len) + " tokens)";
    const exec::CardJobBudget cb = exec::plan_card_job(
        rank, r.budget, pool_.tier(r.device_tier).bytes_capacity(), max_block_bytes(r.device_tier), opt_.window_bytes,
        nonblock_bytes_, g, opt_.chunk_tokens, /*spill_fallback=*/false, share,
        std::to_string(g.tokens) + " of " + std::to_string(job.seq_len) + " tokens");
    window = q == 0 ? cb.window : std::min(window, cb.window);
    chunks[static_cast<std::size_t>(q)] = cb.chunk;
    rooms[static_cast<std::size_t>(q)] = cb.room;
  }
  for (int q = 0; q < n; ++q) {
    for (auto& d : dits_[static_cast<std::size_t>(q)]) d->set_chunk_tokens(chunks[static_cast<std::size_t>(q)]);
  }

  // Shared stores: register the job (Note [Shared stores and host planning], store_cache.h).
  exec::StoreCache::JobLease lease;
  bool host_planning = opt_.host_window_bytes > 0;
  if (opt_.stores != nullptr) {
    std::vector<const exec::WeightStore*> used;
    for (const auto& s : stores_) used.push_back(s.get());
    lease = opt_.stores->begin_job(used, host_planning, opt_.name);
    host_planning = lease.host_planning();
  }
  std::vector<const exec::WeightStore*> stores;
  for (const auto& s : stores_) stores.push_back(s.get());
  std::vector<ParallelRank> ranks;
  bool all_cuda = true;
  for (int q = 0; q < n; ++q) {
    const GroupDitRank& r = opt_.ranks[static_cast<std::size_t>(q)];
    ParallelRank pr;
    pr.device_tier = r.device_tier;
    pr.cuda_device = r.cuda_device;
    for (const auto& d : dits_[static_cast<std::size_t>(q)]) pr.dits.push_back(d.get());
    ranks.push_back(std::move(pr));
    all_cuda = all_cuda && r.cuda_device >= 0;
  }
  GroupFactory make_group = fake_group_factory();
  const char* collectives = "fake";
#ifdef WAND_HAVE_NCCL
  if (all_cuda) {
    make_group = nccl_group_factory();
    collectives = "nccl";
  }
#endif
  (void)all_cuda;  // CPU ranks, or a build without NCCL: FakeCollective
  const std::size_t steps = expert_of_step.size();
  runner_ = std::make_unique<ParallelDitRunner>(pool_, stores, expert_of_step, std::move(ranks), strategy_,
                                                make_group, window, host_planning ? opt_.host_window_bytes : 0);
  for (int q = 0; q < n; ++q) {
    const GroupDitRank& r = opt_.ranks[static_cast<std::size_t>(q)];
    if (r.cuda_device >= 0 && rooms[static_cast<std::size_t>(q)] > 0) {
      exec::cap_caching_allocator(r.cuda_device, nonblock_bytes_ + rooms[static_cast<std::size_t>(q)]);
      capped_[static_cast<std::size_t>(q)] = true;
    }
  }
  lease_ = std::move(lease);
  host_planning_ = host_planning;
  expert_of_step_ = std::move(expert_of_step);
  first_step_ = job.first_step;
  chunks_ = chunks;
  ++jobs_;
  log::get("sched")->info("group dit job name={} strategy={} first_step={} steps={} tokens={} chunk0={} window={} "
                          "collectives={} host_planning={}",
                          opt_.name, strategy_.name(), first_step_, steps, job.seq_len, chunks_[0],
                          format_bytes(window), collectives, host_planning_);
}

void GroupDit::end_job() {
  if (!runner_) return;
  last_job_ = runner_->stats_json();
  for (int q = 0; q < runner_->num_ranks(); ++q) {
    const exec::BlockStreamerStats& s = runner_->streamer(q).stats();
    total_device_bytes_in_ += s.device_bytes_in;
    total_host_bytes_in_ += s.host_bytes_in;
    if (q == 0) total_steps_ += s.steps;
  }
  runner_.reset();
  lease_ = exec::StoreCache::JobLease();
  for (int q = 0; q < num_ranks(); ++q) {
    const int cuda = opt_.ranks[static_cast<std::size_t>(q)].cuda_device;
    if (cuda >= 0 && capped_[static_cast<std::size_t>(q)]) {
      const exec::DeviceMemInfo m = exec::device_mem_info(cuda);
      if (m.valid) exec::cap_caching_allocator(cuda, m.total_bytes);
      capped_[static_cast<std::size_t>(q)] = false;
    }
  }
}

model::CfgForwardFn GroupDit::cfg_forward() {
  return [this](const model::StepForwardInputs& in, const model::CancelCheck& check) { return forward(in, check); };
}

std::pair<at::Tensor, at::Tensor> GroupDit::forward(const model::StepForwardInputs& in,
                                                    const model::CancelCheck& check) {
  const std::string who = "group DiT '" + opt_.name + "'";
  if (!runner_) throw Error(ErrorCode::kInternal, who + ": a step ran outside a job (no begin_job)");
  const std::int64_t k = exec::checked_schedule_index(
      who, in, first_step_, static_cast<std::int64_t>(expert_of_step_.size()), stores_.size(),
      [this](std::int64_t i) { return expert_of_step_[static_cast<std::size_t>(i)]; });
  if (check) check();  // Note [Group cancel]: at step boundaries only
  const exec::StepInputs s = exec::step_inputs_of(in);
  auto out = runner_->step(k, s);
  if (check) check();
  return out;
}

nlohmann::json GroupDit::stats_json() const {
  nlohmann::json stores = nlohmann::json::array();
  for (const auto& s : stores_) stores.push_back(s->status_json());
  nlohmann::json j = {{"name", opt_.name},
                      {"strategy", strategy_.name()},
                      {"ranks", num_ranks()},
                      {"experts", stores_.size()},
                      {"stores", stores},
                      {"shared_stores", opt_.stores != nullptr},
                      {"nonblock_bytes", nonblock_bytes_},
                      {"chunk_tokens", chunks_},
                      {"host_planning", host_planning_},
                      {"jobs", jobs_},
                      {"in_job", runner_ != nullptr}};
  std::uint64_t steps = total_steps_, dev_in = total_device_bytes_in_, host_in = total_host_bytes_in_;
  if (runner_) {
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
