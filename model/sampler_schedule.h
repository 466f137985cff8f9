// Sampling schedules of the official flow solvers, the A14B expert switch and CFG.
//
//   SamplerSchedule s = make_schedule(SolverKind::kUniPC, 40, 12.0);  // t2v-A14B default
//   s.timesteps;   // 40 int64: 999 997 ... 235 (what the DiT receives)
//   s.sigmas;      // 41 float32, last 0
//   ExpertChoice c = choose_expert(s.timesteps[k], 0.875, 3.0, 4.0);  // (low, high) scales
//   v = cfg_combine(v_uncond, v_cond, c.guide_scale);
//
// Bit-exact with wan.utils.fm_solvers(_unipc): float64 schedule math, float32
// sigmas, timesteps truncated toward zero. Free functions: any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace wand::model {

enum class SolverKind { kUniPC, kDpmPP };
SolverKind parse_solver(const std::string& s);  // "unipc" | "dpm++" (also "dpmpp")
const char* solver_name(SolverKind k);

constexpr int kNumTrainTimesteps = 1000;

struct SamplerSchedule {
  std::vector<int64_t> timesteps;  // [N] int64
  std::vector<float> sigmas;       // [N + 1] float32, sigmas[N] = 0
};

// UniPC: linspace(sigma_max = float32(0.999), 0, N + 1)[:-1], shifted (float64).
SamplerSchedule unipc_schedule(int steps, double shift);
// DPM++: linspace(1, 0, N + 1)[:N], shifted (get_sampling_sigmas), passed as explicit sigmas.
SamplerSchedule dpmpp_schedule(int steps, double shift);
SamplerSchedule make_schedule(SolverKind kind, int steps, double shift);

// The A14B high/low-noise expert switch: high-noise expert while
// t >= boundary * 1000; the guidance scale of sample_guide_scale = (low, high).
struct ExpertChoice {
  bool use_high_noise = false;
  double guide_scale = 0.0;
};
ExpertChoice choose_expert(int64_t timestep, double boundary, double guide_low, double guide_high);

// Classifier-free guidance in fp32: v_u + g * (v_c - v_u).
at::Tensor cfg_combine(const at::Tensor& v_uncond, const at::Tensor& v_cond, double guide_scale);

}  // namespace wand::model
