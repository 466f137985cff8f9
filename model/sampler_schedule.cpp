#include "model/sampler_schedule.h"

#include "common/error.h"

namespace wand::model {

namespace {

// numpy.linspace(start, stop, num) with endpoint: start + k * step, last = stop.
std::vector<double> linspace(double start, double stop, int num) {
  if (num == 1) return {start};  // numpy: [start]
  std::vector<double> v(num);
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int k = 0; k < num; ++k) v[k] = static_cast<double>(k) * step + start;
  if (num > 1) v[num - 1] = stop;
  return v;
}

SamplerSchedule finish(const std::vector<double>& sig) {
  SamplerSchedule s;
  for (double x : sig) {
    s.timesteps.push_back(static_cast<int64_t>(x * kNumTrainTimesteps));  // truncation, as .to(int64)
    s.sigmas.push_back(static_cast<float>(x));
  }
  s.sigmas.push_back(0.0f);
  return s;
}

void check_steps(int steps, double shift) {
  if (steps < 1) throw Error(ErrorCode::kBadRequest, "sampler: steps must be >= 1, got " + std::to_string(steps));
  if (!(shift > 0.0)) throw Error(ErrorCode::kBadRequest, "sampler: shift must be > 0");
}

}  // namespace

SolverKind parse_solver(const std::string& s) {
  if (s == "unipc") return SolverKind::kUniPC;
  if (s == "dpm++" || s == "dpmpp") return SolverKind::kDpmPP;
  if (s == "euler") return SolverKind::kEuler;
  throw Error(ErrorCode::kBadRequest, "unknown sampler '" + s + "' (unipc, dpm++, euler)");
}

const char* solver_name(SolverKind k) {
  switch (k) {
    case SolverKind::kUniPC: return "unipc";
    case SolverKind::kDpmPP: return "dpm++";
    case SolverKind::kEuler: return "euler";
  }
  return "?";
}

int solver_code(SolverKind k) {
  switch (k) {
    case SolverKind::kUniPC: return 0;
    case SolverKind::kDpmPP: return 1;
    case SolverKind::kEuler: return 2;
  }
  return -1;
}

SolverKind solver_from_code(std::int64_t code) {
  if (code == 0) return SolverKind::kUniPC;
  if (code == 1) return SolverKind::kDpmPP;
  if (code == 2) return SolverKind::kEuler;
  throw Error(ErrorCode::kBadRequest, "sampler state: unknown solver number " + std::to_string(code) +
                                          " (0 unipc, 1 dpm++, 2 euler)");
}

SamplerSchedule unipc_schedule(int steps, double shift) {
  check_steps(steps, shift);
  // Training table (shift 1): sigmas = 1 - linspace(1, 1/1000, 1000)[::-1] in float32;
  // sigma_max = sigmas[0] = float32(1 - 0.001), sigma_min = 0.
  const double sigma_max = static_cast<double>(static_cast<float>(1.0 - 1.0 / kNumTrainTimesteps));
  std::vector<double> sig = linspace(sigma_max, 0.0, steps + 1);
  sig.pop_back();
  for (double& x : sig) x = shift * x / (1 + (shift - 1) * x);
  return finish(sig);
}

SamplerSchedule dpmpp_schedule(int steps, double shift) {
  check_steps(steps, shift);
  std::vector<double> sig = linspace(1.0, 0.0, steps + 1);
  sig.pop_back();
  for (double& x : sig) x = shift * x / (1 + (shift - 1) * x);
  // set_timesteps(sigmas=...) applies the scheduler's own shift = 1: x -> 1*x/(1+0*x), exact.
  return finish(sig);
}

// Note [Euler schedule]: diffusers' FlowMatchEulerDiscreteScheduler (the reference) built with
// shift = the job's shift and num_train_timesteps 1000, then set_timesteps(N):
//  - the training table (float32): sigma_k = (1000 - k) / 1000, shifted in float32 (the
//    scalars cast to float32): sigma_max = shifted(1) and sigma_min = shifted(1/1000);
//  - timesteps = linspace(1000 sigma_max, 1000 sigma_min, N) (float64, N points, both ends),
//    sigmas = timesteps / 1000, shifted AGAIN in float64 (so the last non-zero sigma is
//    shift applied twice to 0.001: 0.0244 at shift 5; diffusers does this, and it is kept),
//    rounded to float32; a final 0 is appended.
// diffusers hands the DiT the float timesteps float32(sigma) * 1000; wand's DiT takes an
// integer timestep as the official Wan loop does, so they are truncated toward zero like the
// other solvers'. For the expert switch this changes nothing: boundary * 1000 is an integer
// (875, 900), and trunc(t) >= n iff t >= n for an integer n.
SamplerSchedule euler_schedule(int steps, double shift) {
  check_steps(steps, shift);
  const float f_shift = static_cast<float>(shift), f_shift_m1 = static_cast<float>(shift - 1.0);
  auto shifted_f32 = [&](float s) { return (f_shift * s) / (1.0f + f_shift_m1 * s); };
  const double sigma_max = static_cast<double>(shifted_f32(1000.0f / 1000.0f));
  const double sigma_min = static_cast<double>(shifted_f32(1.0f / 1000.0f));
  std::vector<double> t = linspace(sigma_max * kNumTrainTimesteps, sigma_min * kNumTrainTimesteps, steps);
  SamplerSchedule s;
  for (double x : t) {
    double sig = x / kNumTrainTimesteps;
    sig = shift * sig / (1 + (shift - 1) * sig);
    const float sig32 = static_cast<float>(sig);
    s.sigmas.push_back(sig32);
    s.timesteps.push_back(static_cast<int64_t>(sig32 * static_cast<float>(kNumTrainTimesteps)));
  }
  s.sigmas.push_back(0.0f);
  return s;
}

SamplerSchedule make_schedule(SolverKind kind, int steps, double shift) {
  switch (kind) {
    case SolverKind::kUniPC: return unipc_schedule(steps, shift);
    case SolverKind::kDpmPP: return dpmpp_schedule(steps, shift);
    case SolverKind::kEuler: return euler_schedule(steps, shift);
  }
  throw Error(ErrorCode::kInternal, "sampler: unknown solver");
}

ExpertChoice choose_expert(int64_t timestep, double boundary, double guide_low, double guide_high) {
  ExpertChoice c;
  c.use_high_noise = static_cast<double>(timestep) >= boundary * kNumTrainTimesteps;
  c.guide_scale = c.use_high_noise ? guide_high : guide_low;
  return c;
}

at::Tensor cfg_combine(const at::Tensor& v_uncond, const at::Tensor& v_cond, double guide_scale) {
  at::Tensor u = v_uncond.to(at::kFloat), c = v_cond.to(at::kFloat);
  return u + guide_scale * (c - u);
}

}  // namespace wand::model
