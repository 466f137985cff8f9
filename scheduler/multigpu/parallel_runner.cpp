#include "scheduler/multigpu/parallel_runner.h"

#include <exception>
#include <thread>

#include <c10/core/DeviceGuard.h>

#include "common/error.h"
#include "common/log.h"
#include "model/dit.h"
#include "scheduler/cancel_token.h"
#include "scheduler/multigpu/cfg_parallel_dit.h"
#include "scheduler/multigpu/fake_collective.h"
#include "scheduler/multigpu/ulysses_dit.h"
#ifdef WAND_HAVE_NCCL
#include "scheduler/multigpu/nccl_collective.h"
#endif

namespace wand::sched {

GroupFactory fake_group_factory() {
  return [](const std::vector<int>& devices) { return FakeCollective::create_group(static_cast<int>(devices.size())); };
}

#ifdef WAND_HAVE_NCCL
GroupFactory nccl_group_factory() {
  return [](const std::vector<int>& devices) { return NcclCollective::create_group(devices); };
}
#endif

ParallelDitRunner::ParallelDitRunner(memory::MemoryPool& pool, std::vector<const exec::WeightStore*> stores,
                                     std::vector<int> expert_of_step, std::vector<ParallelRank> ranks,
                                     ParallelStrategy strategy, const GroupFactory& make_group,
                                     std::uint64_t window_bytes, std::uint64_t host_window_bytes)
    : ranks_(std::move(ranks)), expert_of_step_(std::move(expert_of_step)), strategy_(strategy) {
  const int n = static_cast<int>(ranks_.size());
  if (strategy_.seq_degree < 1 || n != strategy_.ranks()) {
    throw Error(ErrorCode::kConfig, "parallel runner: strategy " + strategy_.name() + " needs " +
                                        std::to_string(strategy_.ranks()) + " cards, got " + std::to_string(n));
  }
  for (int q = 0; q < n; ++q) {
    const ParallelRank& r = ranks_[static_cast<std::size_t>(q)];
    if (r.dits.size() != stores.size()) {
      throw Error(ErrorCode::kBadRequest, "parallel runner: rank " + std::to_string(q) + " has " +
                                              std::to_string(r.dits.size()) + " DiTs for " +
                                              std::to_string(stores.size()) + " weight stores");
    }
    for (const model::WanDit* d : r.dits) {
      if (d == nullptr) throw Error(ErrorCode::kBadRequest, "parallel runner: rank " + std::to_string(q) + " DiT is null");
      const at::Device want = r.cuda_device < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, r.cuda_device);
      if (d->device() != want) {
        throw Error(ErrorCode::kBadRequest, "parallel runner: rank " + std::to_string(q) + " DiT is on " +
                                                d->device().str() + ", its card is " + want.str());
      }
      const std::int64_t heads = d->config().num_heads;
      if (heads % strategy_.seq_degree != 0) {
        throw Error(ErrorCode::kConfig, "parallel runner: num_heads " + std::to_string(heads) +
                                            " does not divide by the Ulysses degree of " + strategy_.name());
      }
    }
    exec::BlockStreamerOptions so;
    so.device_tier = r.device_tier;
    so.cuda_device = r.cuda_device;
    so.window_bytes = window_bytes;
    so.host_window_bytes = q == 0 ? host_window_bytes : 0;  // one rank plans the shared host tier
    streams_.push_back(std::make_unique<exec::BlockStreamer>(pool, stores, expert_of_step_, so));
  }
  seq_.resize(static_cast<std::size_t>(n));
  cfg_.resize(static_cast<std::size_t>(n));
  const int S = strategy_.seq_degree;
  auto devices_of = [&](const std::vector<int>& members) {
    std::vector<int> d;
    for (int q : members) d.push_back(ranks_[static_cast<std::size_t>(q)].cuda_device);
    return d;
  };
  if (strategy_.kind == ParallelKind::kUlysses || strategy_.kind == ParallelKind::kCfgUlysses) {
    for (int b = 0; b < (strategy_.cfg_split() ? 2 : 1); ++b) {
      std::vector<int> members;
      for (int s = 0; s < S; ++s) members.push_back(b * S + s);
      auto g = make_group(devices_of(members));
      for (int s = 0; s < S; ++s) seq_[static_cast<std::size_t>(b * S + s)] = std::move(g[static_cast<std::size_t>(s)]);
    }
  }
  if (strategy_.cfg_split()) {
    for (int s = 0; s < S; ++s) {
      auto g = make_group(devices_of({s, S + s}));
      for (int b = 0; b < 2; ++b) cfg_[static_cast<std::size_t>(b * S + s)] = std::move(g[static_cast<std::size_t>(b)]);
    }
  }
  log::get("sched")->info("parallel runner strategy={} ranks={} steps={}", strategy_.name(), n,
                          expert_of_step_.size());
}

ParallelDitRunner::~ParallelDitRunner() = default;

std::pair<at::Tensor, at::Tensor> ParallelDitRunner::run_rank(int q, std::int64_t k, const exec::StepInputs& in,
                                                              const CancelToken* cancel) {
  const ParallelRank& r = ranks_[static_cast<std::size_t>(q)];
  c10::OptionalDeviceGuard guard;
  if (r.cuda_device >= 0) guard.reset_device(at::Device(at::kCUDA, r.cuda_device));
  const model::WanDit& dit = *r.dits[static_cast<std::size_t>(expert_of_step_[static_cast<std::size_t>(k)])];
  const at::Device dev = dit.device();
  const at::Tensor x = in.x.to(dev), t = in.t.to(dev), ctx = in.context.to(dev);
  const at::Tensor ctx_null = in.context_null.defined() ? in.context_null.to(dev) : at::Tensor();
  c10::optional<at::Tensor> y;
  if (in.y) y = in.y->to(dev);
  std::function<void()> check;
  if (cancel != nullptr) check = [cancel] { cancel->throw_if_cancelled(); };
  const model::BlockLoop blocks = streams_[static_cast<std::size_t>(q)]->loop(k, std::move(check));
  if (!in.uncond) {
    // Note [Guidance 1 in a group]: the cond branch alone. single: one forward; ulysses: one
    // sequence-parallel forward; cfg-parallel has nothing to split, so each branch group
    // computes the same cond forward (cfg-parallel: every rank alone, no collective;
    // cfg2xulysses: Ulysses over its own sequence group), the same values on every rank.
    // Redundant work, not wrong: the planner does not pick a CFG split for such a job
    // (Note [Multi-card model], scheduler/plan/multi_planner.h).
    switch (strategy_.kind) {
      case ParallelKind::kSingle:
      case ParallelKind::kCfgParallel:
        return {dit.forward(x, t, ctx, in.seq_len, y, blocks), at::Tensor()};
      case ParallelKind::kUlysses:
      case ParallelKind::kCfgUlysses: {
        UlyssesDit u(dit, *seq_[static_cast<std::size_t>(q)]);
        return {u.forward(x, t, ctx, in.seq_len, y, blocks), at::Tensor()};
      }
    }
  }
  switch (strategy_.kind) {
    case ParallelKind::kSingle:
      return dit.forward_cfg(x, t, ctx, ctx_null, in.seq_len, y, blocks);
    case ParallelKind::kUlysses: {
      UlyssesDit u(dit, *seq_[static_cast<std::size_t>(q)]);
      return u.forward_cfg(x, t, ctx, ctx_null, in.seq_len, y, blocks);
    }
    case ParallelKind::kCfgParallel:
    case ParallelKind::kCfgUlysses: {
      CfgParallelDit p(dit, *cfg_[static_cast<std::size_t>(q)], seq_[static_cast<std::size_t>(q)].get());
      return p.forward_both(x, t, ctx, ctx_null, in.seq_len, y, blocks);
    }
  }
  throw Error(ErrorCode::kInternal, "parallel runner: unknown strategy");
}

std::pair<at::Tensor, at::Tensor> ParallelDitRunner::step(std::int64_t k, const exec::StepInputs& in,
                                                          const CancelToken* cancel) {
  if (k < 0 || k >= static_cast<std::int64_t>(expert_of_step_.size())) {
    throw Error(ErrorCode::kBadRequest, "parallel runner: step " + std::to_string(k) + " out of range (" +
                                            std::to_string(expert_of_step_.size()) + " steps)");
  }
  const int n = num_ranks();
  std::vector<std::pair<at::Tensor, at::Tensor>> out(static_cast<std::size_t>(n));
  std::vector<std::exception_ptr> errs(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int q = 1; q < n; ++q) {
    threads.emplace_back([&, q] {
      try {
        out[static_cast<std::size_t>(q)] = run_rank(q, k, in, cancel);
      } catch (...) {
        errs[static_cast<std::size_t>(q)] = std::current_exception();
      }
    });
  }
  try {  // rank 0 on the calling thread
    out[0] = run_rank(0, k, in, cancel);
  } catch (...) {
    errs[0] = std::current_exception();
  }
  for (auto& t : threads) t.join();
  for (auto& e : errs) {
    if (e) std::rethrow_exception(e);
  }
  return out[0];
}

nlohmann::json ParallelDitRunner::stats_json() const {
  nlohmann::json ranks = nlohmann::json::array();
  for (int q = 0; q < num_ranks(); ++q) {
    nlohmann::json j = streams_[static_cast<std::size_t>(q)]->stats_json();
    j["rank"] = q;
    j["cuda_device"] = ranks_[static_cast<std::size_t>(q)].cuda_device;
    ranks.push_back(j);
  }
  return {{"strategy", strategy_.name()}, {"ranks", ranks}};
}

}  // namespace wand::sched
