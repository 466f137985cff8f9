// Samplers: schedules, the reference doc's unit vector, expert switch, CFG and
// bitwise save/restore of the sampler state.
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "model/sampler.h"
#include "model/sampler_schedule.h"

namespace {

using namespace wand::model;

at::Tensor model_fn(const at::Tensor& x, int64_t t) { return at::sin(x) + 0.1 * static_cast<double>(t) / 1000.0; }

TEST(SamplerSchedule, UniPcFiveStepsShiftFive) {
  // wan22-reference.md 7.2.3.
  SamplerSchedule s = unipc_schedule(5, 5.0);
  EXPECT_EQ(s.timesteps, (std::vector<int64_t>{999, 952, 882, 768, 555}));
  const std::vector<float> sig = {0.99979985f, 0.95215404f, 0.88209325f, 0.76893473f, 0.55524677f, 0.0f};
  ASSERT_EQ(s.sigmas.size(), sig.size());
  for (size_t i = 0; i < sig.size(); ++i) EXPECT_FLOAT_EQ(s.sigmas[i], sig[i]) << i;
}

TEST(SamplerSchedule, DpmStartsAtOneAndTi2vDefault) {
  SamplerSchedule d = dpmpp_schedule(40, 12.0);
  EXPECT_EQ(d.timesteps.front(), 1000);
  EXPECT_EQ(d.sigmas.front(), 1.0f);
  EXPECT_EQ(d.timesteps.back(), 235);
  SamplerSchedule u = unipc_schedule(50, 5.0);
  EXPECT_EQ(u.timesteps.front(), 999);
  EXPECT_EQ(u.timesteps[1], 995);
  EXPECT_EQ(u.timesteps.back(), 92);
  EXPECT_THROW(unipc_schedule(0, 5.0), wand::Error);
  EXPECT_THROW(parse_solver("heun"), wand::Error);
  EXPECT_EQ(parse_solver("euler"), SolverKind::kEuler);
  EXPECT_STREQ(solver_name(SolverKind::kEuler), "euler");
}

// Note [Euler schedule], checked by hand for N = 4, shift 5 (diffusers'
// FlowMatchEulerDiscreteScheduler(shift=5).set_timesteps(4)):
//   training table end: 5 * 0.001 / (1 + 4 * 0.001) = 0.00498008 = sigma_min; sigma_max = 1;
//   timesteps linspace(1000, 4.98008, 4) = 1000, 668.327, 336.653, 4.98008;
//   sigma = t / 1000 shifted again: 5 s / (1 + 4 s) = 1, 0.909707, 0.717317, 0.0244141; then 0.
TEST(SamplerSchedule, EulerFourStepsShiftFiveByHand) {
  SamplerSchedule s = euler_schedule(4, 5.0);
  EXPECT_EQ(s.timesteps, (std::vector<int64_t>{1000, 909, 717, 24}));
  const double t[4] = {1000.0, 1000.0 + (4.98008 - 1000.0) / 3, 1000.0 + 2 * (4.98008 - 1000.0) / 3, 4.98008};
  ASSERT_EQ(s.sigmas.size(), 5u);
  for (int k = 0; k < 4; ++k) {
    const double x = t[k] / 1000;
    EXPECT_NEAR(s.sigmas[k], 5 * x / (1 + 4 * x), 1e-6) << k;
  }
  EXPECT_NEAR(s.sigmas[1], 0.909707, 1e-6);
  EXPECT_NEAR(s.sigmas[3], 0.0244141, 1e-6);
  EXPECT_EQ(s.sigmas[4], 0.0f);
  EXPECT_EQ(make_schedule(SolverKind::kEuler, 4, 5.0).sigmas, s.sigmas);
  // Shift 1, 2 steps: sigma_min 0.001, no second shift effect: 1, 0.001, 0.
  SamplerSchedule one = euler_schedule(2, 1.0);
  EXPECT_EQ(one.timesteps, (std::vector<int64_t>{1000, 1}));
  EXPECT_FLOAT_EQ(one.sigmas[1], 0.001f);
  // One step: linspace of one point is its start.
  SamplerSchedule single = euler_schedule(1, 5.0);
  EXPECT_EQ(single.timesteps, (std::vector<int64_t>{1000}));
  EXPECT_EQ(single.sigmas, (std::vector<float>{1.0f, 0.0f}));
  EXPECT_THROW(euler_schedule(0, 5.0), wand::Error);
}

// x_{k+1} = x_k + (sigma_{k+1} - sigma_k) v_k, recomputed here element by element in float32
// (the scheduler's float32 sample and dt), and bitwise what FlowSampler gives.
TEST(FlowSampler, EulerReferenceVector) {
  const std::vector<float> x0 = {0.5f, -1.25f, 2.0f, 0.0f};
  const SamplerSchedule sched = euler_schedule(4, 5.0);
  FlowSampler s(SolverKind::kEuler, 4, 5.0);
  at::Tensor x = at::tensor(at::ArrayRef<float>(x0));
  std::vector<float> ref = x0;
  for (int k = 0; k < 4; ++k) {
    ASSERT_EQ(s.timestep(), sched.timesteps[static_cast<std::size_t>(k)]);
    const at::Tensor v = model_fn(x, s.timestep());
    const float dt = sched.sigmas[static_cast<std::size_t>(k) + 1] - sched.sigmas[static_cast<std::size_t>(k)];
    for (std::size_t j = 0; j < ref.size(); ++j) {
      const float p = dt * v[static_cast<int64_t>(j)].item<float>();
      ref[j] = ref[j] + p;
    }
    x = s.step(v, x);
    EXPECT_EQ(s.last_order(), 1);
    for (std::size_t j = 0; j < ref.size(); ++j) {
      EXPECT_EQ(x[static_cast<int64_t>(j)].item<float>(), ref[j]) << "step " << k << " elem " << j;
    }
  }
  EXPECT_TRUE(s.done());
  // A constant velocity v integrates exactly: x_N = x_0 + (0 - sigma_0) v = x_0 - v.
  FlowSampler c(SolverKind::kEuler, 8, 12.0);
  at::Tensor y = at::full({3}, 0.25f);
  while (!c.done()) y = c.step(at::full({3}, 2.0f), y);
  EXPECT_NEAR(y[0].item<float>(), 0.25f - 2.0f, 1e-6);
}

TEST(FlowSampler, UniPcReferenceVector) {
  // wan22-reference.md 7.2.3: torch.manual_seed(0); x = randn(1, 2, 3); v = sin(x) + 0.1 t / 1000.
  at::manual_seed(0);
  at::Tensor x = at::randn({1, 2, 3});
  const float expect[5][3] = {{1.4886116f, -0.2844078f, -2.1444416f},
                              {1.4123251f, -0.2715268f, -2.0916166f},
                              {1.2918479f, -0.2515689f, -2.0008075f},
                              {1.0759703f, -0.2160124f, -1.8147323f},
                              {0.5565085f, -0.1278190f, -1.3067399f}};
  FlowSampler s(SolverKind::kUniPC, 5, 5.0);
  for (int k = 0; k < 5; ++k) {
    x = s.step(model_fn(x, s.timestep()), x);
    at::Tensor f = x.flatten();
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(f[j].item<float>(), expect[k][j], 2e-6) << "step " << k << " elem " << j;
  }
  EXPECT_TRUE(s.done());
  EXPECT_THROW(s.step(x, x), wand::Error);
}

TEST(FlowSampler, OrdersFollowTheOfficialWarmup) {
  FlowSampler s(SolverKind::kUniPC, 6, 5.0);
  at::Tensor x = at::ones({4});
  std::vector<int> orders;
  while (!s.done()) {
    x = s.step(model_fn(x, s.timestep()), x);
    orders.push_back(s.last_order());
  }
  EXPECT_EQ(orders, (std::vector<int>{1, 2, 2, 2, 2, 1}));
}

void check_resume(SolverKind kind, int steps, int stop_at) {
  at::manual_seed(4);
  const at::Tensor x0 = at::randn({4, 2, 3, 5});
  // Uninterrupted.
  FlowSampler a(kind, steps, 12.0);
  at::Tensor xa = x0.clone();
  while (!a.done()) xa = a.step(model_fn(xa, a.timestep()), xa);
  // Interrupted at a step boundary, state saved (deep copies), restored in a fresh sampler.
  FlowSampler b(kind, steps, 12.0);
  at::Tensor xb = x0.clone();
  for (int k = 0; k < stop_at; ++k) xb = b.step(model_fn(xb, b.timestep()), xb);
  auto state = b.state_dict();
  at::Tensor saved_x = xb.clone();
  b = FlowSampler(kind, steps, 12.0);  // the old instance is gone
  FlowSampler c(state);
  EXPECT_EQ(c.step_index(), stop_at);
  at::Tensor xc = saved_x;
  while (!c.done()) xc = c.step(model_fn(xc, c.timestep()), xc);
  EXPECT_TRUE(at::equal(xa, xc)) << solver_name(kind) << " resumed at " << stop_at;
}

TEST(FlowSampler, SaveRestoreMidRunIsBitwiseIdentical) {
  for (SolverKind k : {SolverKind::kUniPC, SolverKind::kDpmPP, SolverKind::kEuler}) {
    for (int stop : {0, 1, 2, 5, 9}) check_resume(k, 10, stop);
  }
  for (int stop : {0, 1, 3}) check_resume(SolverKind::kEuler, 4, stop);  // the few-step case
}

TEST(FlowSampler, RejectsForeignState) {
  FlowSampler a(SolverKind::kUniPC, 10, 12.0);
  auto st = a.state_dict();
  FlowSampler b(SolverKind::kDpmPP, 10, 12.0);
  EXPECT_THROW(b.load_state_dict(st), wand::Error);
  FlowSampler c(SolverKind::kUniPC, 12, 12.0);
  EXPECT_THROW(c.load_state_dict(st), wand::Error);
  st.erase("sigmas");
  EXPECT_THROW(FlowSampler{st}, wand::Error);
  // An Euler state restores as Euler only; an unknown solver number is refused.
  FlowSampler e(SolverKind::kEuler, 10, 12.0);
  auto est = e.state_dict();
  EXPECT_EQ(FlowSampler(est).kind(), SolverKind::kEuler);
  EXPECT_THROW(a.load_state_dict(est), wand::Error);
  est["kind"] = at::full({}, int64_t{7}, at::TensorOptions().dtype(at::kLong));
  EXPECT_THROW(FlowSampler{est}, wand::Error);
}

// The A14B expert switch with few steps (issue 18): for 4 and 8 steps, every sampler, t2v
// (shift 12, boundary 0.875) and i2v (shift 5, boundary 0.9), the experts follow the official
// rule: the high-noise expert while timestep >= boundary * 1000 (wan22-reference.md, sampling
// loop). The high-step counts are worked out from each schedule's timesteps (listed).
TEST(ExpertSwitch, FewStepsFollowTheBoundary) {
  struct Case {
    SolverKind kind;
    int steps;
    double shift, boundary;
    std::vector<int64_t> timesteps;
    int high;
  };
  const std::vector<Case> cases = {
      {SolverKind::kUniPC, 4, 12.0, 0.875, {999, 972, 922, 799}, 3},
      {SolverKind::kUniPC, 8, 12.0, 0.875, {999, 988, 972, 952, 922, 877, 799, 631}, 6},
      {SolverKind::kUniPC, 4, 5.0, 0.9, {999, 937, 833, 624}, 2},
      {SolverKind::kUniPC, 8, 5.0, 0.9, {999, 972, 937, 892, 833, 749, 624, 416}, 3},
      {SolverKind::kDpmPP, 4, 12.0, 0.875, {1000, 972, 923, 800}, 3},
      {SolverKind::kDpmPP, 8, 12.0, 0.875, {1000, 988, 972, 952, 923, 878, 800, 631}, 6},
      {SolverKind::kDpmPP, 4, 5.0, 0.9, {1000, 937, 833, 625}, 2},
      {SolverKind::kDpmPP, 8, 5.0, 0.9, {1000, 972, 937, 892, 833, 750, 625, 416}, 3},
      {SolverKind::kEuler, 4, 12.0, 0.875, {1000, 960, 861, 125}, 2},
      {SolverKind::kEuler, 8, 12.0, 0.875, {1000, 986, 968, 942, 902, 833, 684, 125}, 5},
      {SolverKind::kEuler, 4, 5.0, 0.9, {1000, 909, 717, 24}, 2},
      {SolverKind::kEuler, 8, 5.0, 0.9, {1000, 967, 926, 870, 791, 670, 463, 24}, 3},
  };
  for (const Case& c : cases) {
    const std::string what = std::string(solver_name(c.kind)) + " steps " + std::to_string(c.steps) + " boundary " +
                             std::to_string(c.boundary);
    const SamplerSchedule s = make_schedule(c.kind, c.steps, c.shift);
    EXPECT_EQ(s.timesteps, c.timesteps) << what;
    int high = 0;
    for (std::size_t k = 0; k < s.timesteps.size(); ++k) {
      const bool rule = static_cast<double>(s.timesteps[k]) >= c.boundary * kNumTrainTimesteps;
      const ExpertChoice e = choose_expert(s.timesteps[k], c.boundary, 3.0, 4.0);
      EXPECT_EQ(e.use_high_noise, rule) << what << " step " << k;
      EXPECT_EQ(e.guide_scale, rule ? 4.0 : 3.0) << what << " step " << k;
      EXPECT_EQ(e.use_high_noise, static_cast<int>(k) < c.high) << what << " step " << k << ": not a prefix";
      high += e.use_high_noise ? 1 : 0;
    }
    EXPECT_EQ(high, c.high) << what;
  }
}

TEST(Guidance, OneSkipsTheUncondBranchOnlyAtExactlyOne) {
  EXPECT_FALSE(uses_uncond(1.0));
  EXPECT_TRUE(uses_uncond(0.5));  // below 1 still mixes the branches (the official Wan code)
  EXPECT_TRUE(uses_uncond(1.0 + 1e-12));
  EXPECT_TRUE(uses_uncond(3.5));
}

TEST(ExpertSwitch, BoundaryAndGuideScaleOrder) {
  // t2v-A14B: boundary 875, guide (low 3.0, high 4.0).
  EXPECT_TRUE(choose_expert(875, 0.875, 3.0, 4.0).use_high_noise);
  EXPECT_EQ(choose_expert(877, 0.875, 3.0, 4.0).guide_scale, 4.0);
  EXPECT_FALSE(choose_expert(874, 0.875, 3.0, 4.0).use_high_noise);
  EXPECT_EQ(choose_expert(865, 0.875, 3.0, 4.0).guide_scale, 3.0);
  SamplerSchedule s = unipc_schedule(40, 12.0);
  int high = 0;
  for (int64_t t : s.timesteps) high += choose_expert(t, 0.875, 3.0, 4.0).use_high_noise;
  EXPECT_EQ(high, 26);
}

TEST(Cfg, CombinesInFp32) {
  at::Tensor u = at::full({3}, 1.0, at::kBFloat16), c = at::full({3}, 2.0, at::kBFloat16);
  at::Tensor v = cfg_combine(u, c, 3.5);
  EXPECT_EQ(v.scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ(v[0].item<float>(), 4.5f);
}

}  // namespace
