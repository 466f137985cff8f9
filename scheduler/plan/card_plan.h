// CardPlan: what one card does for one job under a strategy (which blocks stay resident,
// prefetch depth, activation chunk, predicted block / step times, peak VRAM), and HostPlan:
// what the one pinned host tier holds and what must come from disk per job. The building
// blocks of planner v1 (planner.h) and v2 (multi_planner.h).
//
//   CardWork w;  w.branches = 2;  w.ranks = 1;  w.streaming_cards = 1;
//   CardPlan p = plan_card(shape, geom, {0, 22_GiB}, cal, w);
//   if (!p.feasible) std::puts(p.reason.c_str());     // names every number
//   HostPlan h = plan_host(shape, geom, host_bytes, cal, p.prefetch_depth);   // throws kConfig
//
// Note [Card plan]: the card holds context + both experts' non-block weights (with the job's LoRAs,
// Note [LoRA cost], cost_model.h) + activations
// (x activation_cap_factor, the allocator cap) + weight slots. When everything fits, every
// block of every expert stays resident (depth 0, no streaming). Otherwise the slots are the
// prefetch window (depth d blocks, 2 when room else 1) plus the block being released, and
// what is left keeps r blocks resident (Belady over the cyclic block order keeps a fixed set;
// the active expert gets up to num_layers of them). A step costs
//   r x compute + (L - r) x max(compute + comm, transfer) [+ comm on resident blocks],
// with transfer = block bytes / effective PCIe, effective PCIe = min(pcie, host_mem_gbps /
// streaming cards) (N cards streaming draw N x the bytes from host memory). With two experts
// and not everything resident, the first step of each expert streams every block (the slots
// held the other expert): 2 such steps per job. Chunk candidates: none, 16,384 tokens (measured:
// 305.1 ms at 75,600 tokens, the same as unchunked), then 8,192 .. 1,024 only to fit at all
// (their speed is not measured; the plan says so). The best step time wins, ties to the larger
// chunk.
//
// Note [Fixed tier]: a device tier is one allocation made when the pool starts (memory/cuda),
// so on a running daemon the blocks' room is not the planner's to choose: with
// DeviceSpec::tier_bytes set, the tier holds the window and as many resident blocks as fit,
// the peak counts the whole tier, and the activations get what the budget leaves beside it
// (the chunk is chosen to fit there). Measured on the H100 (bench/exec, 2026-11-25), planning
// the tier freely predicted a 480p peak 35% above a run whose tier was sized for 720p.
// Free functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/plan/calibration.h"
#include "scheduler/plan/cost_model.h"
#include "scheduler/plan/model_shape.h"

namespace wand::sched::plan {

struct DeviceSpec {
  int index = 0;
  std::uint64_t budget_bytes = 0;  // everything on the card (executor.device_budget)
  // The device tier's size when it is fixed already (memory.devices[].bytes of a running
  // daemon, a benchmark's slots): the blocks live there, and the card holds all of it whatever
  // the job (Note [Fixed tier]). 0: the planner sizes the tier (recommended_device_tier_bytes).
  std::uint64_t tier_bytes = 0;
};

// What a card runs per block under a strategy.
struct CardWork {
  int branches = 2;            // CFG branches on this card (1: CFG-parallel)
  int ranks = 1;               // Ulysses ranks (sequence split)
  int streaming_cards = 1;     // cards streaming from host memory at the same time (contention)
  double comm_s_per_block = 0; // all-to-all time per block (Ulysses), not overlapped with compute
};

struct PeakBreakdown {
  std::uint64_t context = 0, non_block = 0, weight_slots = 0, resident_blocks = 0, activations = 0;
  std::uint64_t total() const { return context + non_block + weight_slots + resident_blocks + activations; }
  nlohmann::json to_json() const;
};

struct CardPlan {
  int device_index = 0;
  std::uint64_t budget_bytes = 0;
  bool feasible = false;
  std::string reason;           // why not (numbers named), when !feasible
  int prefetch_depth = 0;       // 0: every block resident, nothing streamed
  int resident_blocks = 0;      // blocks kept on the card (all experts)
  int resident_active = 0;      // of the active expert (<= num_layers)
  std::int64_t chunk_tokens = 0;  // 0: unchunked
  bool chunk_speed_measured = true;
  std::uint64_t activation_need = 0;  // estimate before the cap factor
  double pcie_gbps_effective = 0;
  BlockTime block_one_branch;   // compute of one branch of one block
  double block_compute_s = 0;   // all branches on this card
  double block_transfer_s = 0;  // one block over the effective PCIe
  double comm_s_per_block = 0;
  double step_s = 0;            // steady state
  double cold_step_s = 0;       // a step that streams every block
  int cold_steps_per_job = 0;
  double forward_s = 0;         // one expert forward, one branch, steady state
  std::string bound;            // "compute" | "pcie" | "resident"
  PeakBreakdown peak;
  bool streaming() const { return prefetch_depth > 0; }
  nlohmann::json to_json() const;
};

CardPlan plan_card(const ModelShape& m, const JobGeometry& g, const DeviceSpec& dev, const Calibration& cal,
                   const CardWork& work);

struct HostPlan {
  std::uint64_t budget_bytes = 0;
  std::uint64_t dit_bytes = 0;          // both experts, run dtype
  std::uint64_t dit_in_host = 0;        // of which pinned in the host tier
  std::uint64_t staging_bytes = 0;      // disk -> host window when the experts do not fit
  bool t5_in_host = false;
  std::uint64_t t5_bytes = 0;
  std::uint64_t disk_bytes_per_job = 0; // DiT bytes read from disk per job (warm daemon)
  std::uint64_t t5_disk_bytes_per_job = 0;  // umT5 re-read per job when the host does not keep it
  std::uint64_t disk_bytes_first_job = 0;   // DiT + umT5 read by a job on a cold host tier
  // Note [Switch waits]: when the host cannot keep both experts, the next expert's bytes that
  // do not fit beside the active one are read while the switch step waits for them.
  std::uint64_t switch_wait_bytes = 0;      // per expert switch (0: prefetched in time or all kept)
  std::uint64_t first_wait_bytes = 0;       // a cold job's first expert (its step 0 waits for it)
  std::uint64_t first_load_bytes = 0;   // everything read once when the daemon starts
  std::uint64_t total() const { return dit_in_host + staging_bytes + (t5_in_host ? t5_bytes : 0); }
  nlohmann::json to_json() const;
};

// Throws Error(kConfig) naming the numbers when the host budget cannot hold the staging
// window (4 blocks) that streaming from disk needs.
HostPlan plan_host(const ModelShape& m, const JobGeometry& g, std::uint64_t host_bytes, const Calibration& cal);

// Cards that keep every block resident never re-read the DiT from disk per job (it was
// loaded once): disk_bytes_per_job becomes 0 when every card of the strategy is resident.
void discount_device_residency(HostPlan& h, const std::vector<CardPlan>& cards);

struct JobTimes {
  double t5_s = 0;          // text encoding (umT5 weights over PCIe or from disk + compute)
  double denoise_s = 0;     // max(steps, disk floor)
  double steps_s = 0;       // sum of step times (cold steps included)
  double disk_floor_s = 0;  // disk bytes per job / disk GB/s
  double switch_wait_s = 0; // per switch (Note [Switch waits]); 2 per warm job
  double vae_s = 0;
  double job_s = 0;         // a warm daemon's job
  double first_job_s = 0;   // the same job on a cold host tier (a fresh daemon, a benchmark)
  nlohmann::json to_json() const;
};

// step_s / cold_step_s / cold_steps from the card plan of the strategy (the slowest card).
JobTimes job_times(const ModelShape& m, const JobGeometry& g, const HostPlan& h, const Calibration& cal,
                   double step_s, double cold_step_s, int cold_steps);

}  // namespace wand::sched::plan
