// FlowSampler: the official flow-matching multistep solvers
// (FlowUniPCMultistepScheduler bh2 order 2, FlowDPMSolverMultistepScheduler
// dpmsolver++ midpoint order 2) and diffusers' first-order FlowMatchEulerDiscreteScheduler
// (the few-step distillations' sampler), one instance per job, spanning both experts.
//
//   FlowSampler s(SolverKind::kUniPC, 40, 12.0);
//   while (!s.done()) {
//     int64_t t = s.timestep();                       // give this to the DiT
//     at::Tensor v = cfg_combine(v_u, v_c, g);        // model output (velocity)
//     x = s.step(v, x);
//   }
//   auto st = s.state_dict();   // at a step boundary; FlowSampler r(st) resumes bitwise
//
// Step coefficients are computed in float32 scalars exactly as the official
// code computes them on 0-dim float32 tensors; the latent arithmetic runs in the
// latents' dtype (DPM++ rounds the sample through float32 each step, as the
// official "upcast" line does). State is a small value (history of two data
// predictions, last sample, counters); not thread-safe, one caller at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/ATen.h>

#include "model/sampler_schedule.h"

namespace wand::model {

class FlowSampler {
 public:
  FlowSampler(SolverKind kind, int steps, double shift);
  // Restores a sampler saved by state_dict() (validates it).
  explicit FlowSampler(const std::map<std::string, at::Tensor>& state);

  SolverKind kind() const { return kind_; }
  const SamplerSchedule& schedule() const { return sched_; }
  int steps() const { return static_cast<int>(sched_.timesteps.size()); }
  int64_t step_index() const { return step_; }
  bool done() const { return step_ >= steps(); }
  int64_t timestep() const;   // timesteps[step_index]
  float sigma() const;        // sigmas[step_index]
  int last_order() const { return this_order_; }  // order of the last predictor (UniPC) / update (DPM++); Euler 1

  // One solver step: model output v (velocity) for `sample` at the current
  // timestep -> the sample at the next timestep (same dtype as v).
  at::Tensor step(const at::Tensor& model_output, const at::Tensor& sample);

  // Complete state (tensors on CPU; scalars as 0-dim / 1-D tensors).
  std::map<std::string, at::Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, at::Tensor>& state);

 private:
  at::Tensor step_unipc(const at::Tensor& m, const at::Tensor& sample);
  at::Tensor step_dpmpp(const at::Tensor& m, const at::Tensor& sample, const at::Tensor& v);
  at::Tensor step_euler(const at::Tensor& v, const at::Tensor& sample);

  SolverKind kind_;
  double shift_ = 1.0;
  SamplerSchedule sched_;
  at::Tensor prev_output_;   // m_{k-1} (data prediction), undefined before step 1
  at::Tensor last_output_;   // m_k
  at::Tensor last_sample_;   // UniPC: the (corrected) sample of the last step
  int lower_order_nums_ = 0;
  int this_order_ = 0;
  int64_t step_ = 0;
};

}  // namespace wand::model
