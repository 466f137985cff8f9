#include "model/sampler_schedule.h"

#include "common/error.h"

namespace wand::model {

namespace {

// numpy.linspace(start, stop, num) with endpoint: start + k * step, last = stop.
std::vector<double> linspace(double start, double stop, int num) {
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
  throw Error(ErrorCode::kBadRequest, "unknown sampler '" + s + "' (unipc, dpm++)");
}

const char* solver_name(SolverKind k) { return k == SolverKind::kUniPC ? "unipc" : "dpm++"; }

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

SamplerSchedule make_schedule(SolverKind kind, int steps, double shift) {
  return kind == SolverKind::kUniPC ? unipc_schedule(steps, shift) : dpmpp_schedule(steps, shift);
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
