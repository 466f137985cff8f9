// Planner v2: several cards of any sizes (24 / 12 / 80 GB) sharing one pinned host tier.
// Strategies for one job: single (one card), cfg-parallel (the two CFG branches on two
// cards), ulysses-N (sequence parallel over N cards; num_heads % N == 0, sequence padded to
// a multiple of N, an all-to-all of q, k, v and o per block and branch), cfg-x-ulysses-N
// (2 x N cards). For a queue of jobs: job-parallel (each job on one card whose budget fits
// it), for throughput.
//
//   MachineSpec mc{{{0, 22_GiB}, {1, 10_GiB}, {2, 76_GiB}}, /*host_bytes=*/96_GiB};
//   MultiPlan p = plan_multi(shape, {spec}, mc, cal);        // 1 job: the lowest step time
//   p.choice.strategy;  p.choice.devices;  p.strategies;     // every strategy, for comparison
//   MultiPlan q = plan_multi(shape, {a, b, c, d}, mc, cal);  // 4 jobs: job-parallel
//   q.jobs[i].prediction.devices;  q.jobs[i].end_s;
//   StrategyPrediction u3 = evaluate_strategy(shape, geom, mc, cal, "ulysses", 3, {0, 1, 2});  // !feasible for 40 heads
//
// Note [Multi-card model]: per card the v1 card plan (card_plan.h) with the strategy's work:
// cfg-parallel = 1 branch per card; ulysses-N = 2 branches over S_pad / N tokens with the
// attention of N/W heads over all S_pad tokens, plus 2 x 4 all-to-alls per block, each moving
// (N-1)/N of the rank's [S_pad/N, D] run-dtype tensor at interconnect_gbps (not overlapped
// with compute: the collectives run on the compute stream today). Every card holds the whole
// block it runs, so N streaming cards each copy every block: host contention gives each
// min(pcie, host_mem_gbps / N_streaming). The strategy's step is its slowest card's; for
// each strategy the fastest cards that fit are chosen. A card that cannot fit the job under
// any strategy is excluded with its reason. Throughput: jobs in queue order, each to the card
// that finishes it first (list scheduling), with every usable card counted as streaming
// concurrently. Embedding / head / all-gather of the prediction are not modelled. A job with
// guidance 1 on every step (JobGeometry::branches 1, Note [Guidance 1] in
// model/sampler_schedule.h) has one branch: single and ulysses-N count one, and cfg-parallel /
// cfg-x-ulysses are infeasible with that reason (nothing to split), so the choice is another.
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/plan/planner.h"

namespace wand::sched::plan {

struct MachineSpec {
  std::vector<DeviceSpec> devices;
  std::uint64_t host_bytes = 0;
  nlohmann::json to_json() const;
};

struct JobAssignment {
  std::size_t job = 0;              // index in the queue
  StrategyPrediction prediction;
  double start_s = 0, end_s = 0;
};

struct MultiPlan {
  std::string mode;                          // "latency" (one job) | "throughput" (job-parallel)
  JobGeometry geom;                          // of the first job
  HostPlan host;                             // for the first job
  StrategyPrediction choice;                 // for the first job
  std::vector<StrategyPrediction> strategies;  // every strategy for the first job
  std::vector<JobAssignment> jobs;
  std::vector<std::pair<int, std::string>> excluded;  // device, why (cannot fit the first job)
  double makespan_s = 0;
  double jobs_per_hour = 0;
  nlohmann::json to_json(const ModelShape& m, const Calibration& cal, const MachineSpec& mc) const;
};

// kind: "single" (devices: 1), "cfg-parallel" (2), "ulysses" (ranks), "cfg-x-ulysses" (2 x ranks).
// `devices` are the candidate cards; the fastest that fit are used. Never throws for a plan
// that cannot run: feasible = false with the reason (numbers named).
StrategyPrediction evaluate_strategy(const ModelShape& m, const JobGeometry& g, const MachineSpec& mc,
                                     const Calibration& cal, const std::string& kind, int ranks,
                                     const std::vector<int>& devices);

// Throws Error(kConfig) when no card can run the first job, or the host budget is too small.
MultiPlan plan_multi(const ModelShape& m, const std::vector<JobSpec>& queue, const MachineSpec& mc,
                     const Calibration& cal);

}  // namespace wand::sched::plan
