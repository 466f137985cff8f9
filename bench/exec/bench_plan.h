// The planner's prediction (scheduler/plan, planner v1 with the default H100 calibration) for
// one benchmark case, to sit beside the measurement in the bench JSON.
//
//   nlohmann::json p = planner_prediction(model_dir, 832, 480, 81, 40, 23ull << 30, 32ull << 30);
//   // the device tier fixed at the run's size (Note [Fixed tier], card_plan.h):
//   nlohmann::json q = planner_prediction(model_dir, 832, 480, 81, 40, 23ull << 30, 32ull << 30, slots);
//   // {"forward_s", "step_s", "cold_step_s", "job_s", "t5_s", "vae_s", "disk_floor_s", "disk_bytes",
//   //  "peak_device_bytes", "host_bytes", "bound", "chunk_tokens", "plan": <wanctl plan JSON>}
//   // or {"error": "..."} when the planner refuses the case (e.g. a tiny expert-only dir),
//   // or null when this build has no planner (WAND_BENCH_HAVE_PLAN unset).
//
// Header-only (the bench binaries are its only users). Any thread.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>

#include <nlohmann/json.hpp>

#ifdef WAND_BENCH_HAVE_PLAN
#include "scheduler/job_spec.h"
#include "scheduler/plan/planner.h"
#endif

namespace wand::bench {

inline nlohmann::json planner_prediction(const std::filesystem::path& model_dir, int width, int height, int frames,
                                         int steps, std::uint64_t device_budget, std::uint64_t host_bytes,
                                         std::uint64_t tier_bytes = 0) {
#ifdef WAND_BENCH_HAVE_PLAN
  namespace plan = wand::sched::plan;
  try {
    const plan::ModelShape m = plan::model_shape_from_dir(model_dir);
    sched::JobSpec spec;
    spec.task = "t2v";
    spec.width = width;
    spec.height = height;
    spec.frames = frames;
    spec.steps = steps;
    const plan::Calibration cal = plan::Calibration::defaults();
    const plan::SingleCardPlan p = plan::plan_single_card(m, spec, {0, device_budget, tier_bytes}, host_bytes, cal);
    return {{"source", "scheduler/plan v1, Calibration::defaults()"},
            {"device_budget_bytes", device_budget},
            {"device_tier_bytes", tier_bytes},
            {"host_budget_bytes", host_bytes},
            {"forward_s", p.card.forward_s},
            {"step_s", p.card.step_s},
            {"cold_step_s", p.card.cold_step_s},
            {"job_s", p.times.job_s},
            {"first_job_s", p.times.first_job_s},
            {"switch_wait_s", p.times.switch_wait_s},
            {"t5_s", p.times.t5_s},
            {"vae_s", p.times.vae_s},
            {"steps_s", p.times.steps_s},
            {"disk_floor_s", p.times.disk_floor_s},
            {"disk_bytes", p.host.disk_bytes_per_job},
            {"t5_disk_bytes", p.host.t5_disk_bytes_per_job},
            {"disk_bytes_first_job", p.host.disk_bytes_first_job},
            // The DiT's part of a cold job's disk bytes at the calibrated disk rate (umT5's read
            // is inside the job's T5 time, not under the steps).
            {"disk_floor_first_job_s",
             static_cast<double>(p.host.disk_bytes_first_job - p.host.t5_bytes) / (cal.disk_gbps.value * 1e9)},
            {"peak_device_bytes", p.card.peak.total()},
            {"host_bytes", p.host.total()},
            {"bound", p.card.bound},
            {"chunk_tokens", p.card.chunk_tokens},
            {"plan", p.to_json(m, cal)}};
  } catch (const std::exception& e) {
    return {{"error", e.what()}};
  }
#else
  (void)model_dir, (void)width, (void)height, (void)frames, (void)steps, (void)device_budget, (void)host_bytes,
      (void)tier_bytes;
  return nullptr;
#endif
}

}  // namespace wand::bench
