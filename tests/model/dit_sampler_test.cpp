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
  EXPECT_THROW(parse_solver("euler"), wand::Error);
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
  for (SolverKind k : {SolverKind::kUniPC, SolverKind::kDpmPP}) {
    for (int stop : {0, 1, 2, 5, 9}) check_resume(k, 10, stop);
  }
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
