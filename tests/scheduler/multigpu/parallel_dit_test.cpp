// Ulysses sequence parallel, CFG-parallel and CFG x Ulysses on fake ranks give
// the single-device prediction / latents of the tiny 12-head DiT (fp32, 1e-5 relative).
#include <gtest/gtest.h>

#include "common/error.h"
#include "model/sampler.h"
#include "model/sampler_schedule.h"
#include "scheduler/multigpu/cfg_parallel_dit.h"
#include "scheduler/multigpu/fake_collective.h"
#include "scheduler/multigpu/ulysses_dit.h"
#include "tests/scheduler/multigpu/tiny_parallel_model.h"

namespace {

using namespace wand;
using sched::CfgParallelDit;
using sched::Collective;
using sched::FakeCollective;
using sched::UlyssesDit;

constexpr double kRelTol = 1e-5;
constexpr double kGuide = 5.0;

// max |a - ref| <= tol * max |ref|
void expect_close(const at::Tensor& a, const at::Tensor& ref, const std::string& what) {
  ASSERT_EQ(a.sizes(), ref.sizes()) << what;
  const double scale = ref.abs().max().item<double>();
  const double err = (a.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>();
  ASSERT_GT(scale, 0.0) << what;
  EXPECT_LE(err, kRelTol * scale) << what << ": max abs error " << err << " vs max |ref| " << scale;
}

struct Case {
  at::Tensor x;          // [16, 5, 10, 2]: token grid 5 x 5 x 1 = 25 tokens (divides by none of 2, 3, 4)
  at::Tensor context;    // [7, text_dim]
  at::Tensor context_null;  // [5, text_dim]
  at::Tensor t;          // [1]
  int64_t seq_len = 25;
};

Case make_case() {
  at::manual_seed(3);
  Case c;
  c.x = at::randn({16, 5, 10, 2});
  c.context = at::randn({7, test::kTinyTextDim});
  c.context_null = at::randn({5, test::kTinyTextDim});
  c.t = at::full({1}, 937.0);
  return c;
}

class ParallelDit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dit_ = test::tiny_parallel_dit(); }
  static void TearDownTestSuite() { dit_.reset(); }
  static inline std::shared_ptr<model::WanDit> dit_;
};

TEST_F(ParallelDit, UlyssesMatchesSingleDeviceWithPadding) {
  const Case c = make_case();
  const at::Tensor ref = dit_->forward(c.x, c.t, c.context, c.seq_len);
  for (int W : {1, 2, 3, 4}) {
    if (W > 1) EXPECT_GT(UlyssesDit::padded_len(c.seq_len, W), c.seq_len) << "case must exercise padding, W=" << W;
    auto g = FakeCollective::create_group(W);
    std::vector<at::Tensor> out(W);
    test::run_threads(W, [&](int r) {
      UlyssesDit u(*dit_, *g[r]);
      out[r] = u.forward(c.x, c.t, c.context, c.seq_len);
    });
    for (int r = 0; r < W; ++r) {
      expect_close(out[r], ref, "ulysses W=" + std::to_string(W) + " rank " + std::to_string(r));
      EXPECT_TRUE(at::equal(out[r], out[0])) << "ranks disagree, W=" << W;
    }
  }
}

TEST_F(ParallelDit, UlyssesWithCallerPaddingAndPerTokenTimesteps) {
  // seq_len 30 > 25 tokens (the caller pads too), per-token t as ti2v passes it;
  // on 4 ranks the sequence becomes 32.
  const Case c = make_case();
  const int64_t seq_len = 30;
  at::Tensor t = at::full({seq_len}, 937.0);
  t.slice(0, 0, 10).fill_(0.0);  // the first-frame tokens at t = 0
  const at::Tensor ref = dit_->forward(c.x, t, c.context, seq_len);
  const int W = 4;
  auto g = FakeCollective::create_group(W);
  std::vector<at::Tensor> out(W);
  test::run_threads(W, [&](int r) {
    UlyssesDit u(*dit_, *g[r]);
    sched::UlyssesInputs in = u.embed(c.x, t, c.context, seq_len);
    EXPECT_EQ(in.padded_len, 32);
    EXPECT_EQ(in.local_len, 8);
    EXPECT_EQ(in.local.tokens.size(1), 8);
    at::Tensor h = in.local.tokens;  // stage API with weights handed in
    for (int64_t i = 0; i < dit_->num_layers(); ++i) h = u.block(i, h, in, dit_->block_weights(i));
    out[r] = u.head(h, in);
  });
  for (int r = 0; r < W; ++r) expect_close(out[r], ref, "per-token t rank " + std::to_string(r));
}

TEST_F(ParallelDit, HeadsMustDivideTheRanks) {
  auto g = FakeCollective::create_group(5);  // 12 heads on 5 ranks
  try {
    UlyssesDit u(*dit_, *g[0]);
    FAIL() << "expected a config error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("num_heads 12"), std::string::npos) << e.what();
  }
  auto three = FakeCollective::create_group(3);
  EXPECT_THROW(CfgParallelDit(*dit_, *three[0]), Error);  // guidance needs exactly 2 ranks
}

// Latents after `steps` UniPC steps, single device, both branches interleaved.
at::Tensor single_device_latents(const model::WanDit& dit, const Case& c, int steps) {
  model::FlowSampler s(model::SolverKind::kUniPC, steps, 5.0);
  at::Tensor x = c.x.clone();
  while (!s.done()) {
    at::Tensor t = at::full({1}, static_cast<double>(s.timestep()));
    auto [vc, vu] = dit.forward_cfg(x, t, c.context, c.context_null, c.seq_len);
    x = s.step(model::cfg_combine(vu, vc, kGuide), x);
  }
  return x;
}

at::Tensor cfg_parallel_latents(const CfgParallelDit& p, const Case& c, int steps) {
  model::FlowSampler s(model::SolverKind::kUniPC, steps, 5.0);
  at::Tensor x = c.x.clone();
  while (!s.done()) {
    at::Tensor t = at::full({1}, static_cast<double>(s.timestep()));
    x = s.step(p.forward_guided(x, t, c.context, c.context_null, kGuide, c.seq_len), x);
  }
  return x;
}

TEST_F(ParallelDit, CfgParallelAndCfgTimesUlyssesMatchSingleDeviceLatents) {
  const Case c = make_case();
  const int steps = 3;
  const at::Tensor ref = single_device_latents(*dit_, c, steps);
  {  // CFG-parallel on 2 ranks.
    auto cfg = FakeCollective::create_group(2);
    std::vector<at::Tensor> out(2);
    test::run_threads(2, [&](int r) {
      CfgParallelDit p(*dit_, *cfg[r]);
      EXPECT_EQ(p.is_conditional(), r == 0);
      out[r] = cfg_parallel_latents(p, c, steps);
    });
    for (int r = 0; r < 2; ++r) expect_close(out[r], ref, "cfg-parallel rank " + std::to_string(r));
  }
  {  // CFG x Ulysses: rank q = 2 b + s, branch b, sequence position s.
    std::vector<std::vector<std::unique_ptr<Collective>>> seq, cfg;
    for (int i = 0; i < 2; ++i) {
      seq.push_back(FakeCollective::create_group(2));  // seq[b][s]
      cfg.push_back(FakeCollective::create_group(2));  // cfg[s][b]
    }
    std::vector<at::Tensor> out(4);
    test::run_threads(4, [&](int q) {
      const int b = q / 2, s = q % 2;
      CfgParallelDit p(*dit_, *cfg[s][b], seq[b][s].get());
      out[q] = cfg_parallel_latents(p, c, steps);
    });
    for (int q = 0; q < 4; ++q) expect_close(out[q], ref, "cfg x ulysses rank " + std::to_string(q));
  }
  {  // Ulysses on 3 ranks with both branches on each rank.
    auto g = FakeCollective::create_group(3);
    std::vector<at::Tensor> out(3);
    test::run_threads(3, [&](int r) {
      UlyssesDit u(*dit_, *g[r]);
      model::FlowSampler s(model::SolverKind::kUniPC, steps, 5.0);
      at::Tensor x = c.x.clone();
      while (!s.done()) {
        at::Tensor t = at::full({1}, static_cast<double>(s.timestep()));
        at::Tensor vc = u.forward(x, t, c.context, c.seq_len);
        at::Tensor vu = u.forward(x, t, c.context_null, c.seq_len);
        x = s.step(model::cfg_combine(vu, vc, kGuide), x);
      }
      out[r] = x;
    });
    for (int r = 0; r < 3; ++r) expect_close(out[r], ref, "ulysses-3 cfg rank " + std::to_string(r));
  }
}

}  // namespace
