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

enum class SolverKind { kUniPC, kDpmPP, kEuler };
SolverKind parse_solver(const std::string& s);  // "unipc" | "dpm++" (also "dpmpp") | "euler"
const char* solver_name(SolverKind k);
// The solver's number in a saved sampler state (0 unipc, 1 dpm++, 2 euler); the inverse throws
// Error(kBadRequest) for an unknown number.
int solver_code(SolverKind k);
SolverKind solver_from_code(std::int64_t code);

constexpr int kNumTrainTimesteps = 1000;

struct SamplerSchedule {
  std::vector<int64_t> timesteps;  // [N] int64
  std::vector<float> sigmas;       // [N + 1] float32, sigmas[N] = 0
};

// UniPC: linspace(sigma_max = float32(0.999), 0, N + 1)[:-1], shifted (float64).
SamplerSchedule unipc_schedule(int steps, double shift);
// DPM++: linspace(1, 0, N + 1)[:N], shifted (get_sampling_sigmas), passed as explicit sigmas.
SamplerSchedule dpmpp_schedule(int steps, double shift);
// Euler: diffusers' FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(N) (Note [Euler
// schedule], sampler_schedule.cpp).
SamplerSchedule euler_schedule(int steps, double shift);
SamplerSchedule make_schedule(SolverKind kind, int steps, double shift);

// The A14B high/low-noise expert switch: high-noise expert while
// t >= boundary * 1000; the guidance scale of sample_guide_scale = (low, high).
struct ExpertChoice {
  bool use_high_noise = false;
  double guide_scale = 0.0;
};
ExpertChoice choose_expert(int64_t timestep, double boundary, double guide_low, double guide_high);

// Note [Guidance 1]: a step whose guide scale is exactly 1 runs the conditional branch only:
// v_u + 1 * (v_c - v_u) is v_c in exact arithmetic, so the unconditional forward is skipped and
// the step's velocity IS the cond prediction (bitwise the model's plain forward), as diffusers
// does (do_classifier_free_guidance). diffusers skips it for every scale <= 1; wand only at 1:
// a scale below 1 still mixes the two branches, as the official Wan code (which always runs
// both) does. Per expert: the 2-value guide_scale (low noise, high noise) may have one 1. A job
// none of whose steps guides needs no negative-prompt encode either.
inline bool uses_uncond(double guide_scale) { return guide_scale != 1.0; }

// Classifier-free guidance in fp32: v_u + g * (v_c - v_u).
at::Tensor cfg_combine(const at::Tensor& v_uncond, const at::Tensor& v_cond, double guide_scale);

}  // namespace wand::model
