// Few-step jobs (issue 18 item 3) on the tiny models, CPU fp32: guidance 1 runs one DiT forward
// per step and equals the model's plain cond forward bitwise (Note [Guidance 1],
// model/sampler_schedule.h); a 2-value guide_scale with one 1 drops the uncond branch for that
// expert only; the negative prompt is not encoded when nothing guides; checkpoints of such jobs
// and of Euler jobs resume bitwise; the expert switch follows the boundary at 4 and 8 steps.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/generator.h"
#include "model/sampler.h"
#include "model/sampler_schedule.h"
#include "tests/model/tiny_model.h"

namespace {

namespace fs = std::filesystem;
using namespace wand;
using namespace wand::model;
using namespace wand::model::testing;

class FewStepTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { root_ = make_temp_dir("fewstep-test"); }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  static fs::path dir(const std::string& preset) {
    if (!fs::exists(root_ / preset)) write_tiny_wan_dir(root_ / preset, preset, 7);
    return root_ / preset;
  }
  static std::unique_ptr<WanGenerator> make(const std::string& preset, int* text_calls = nullptr) {
    GeneratorOptions o;
    o.device = at::Device(at::kCPU);
    o.text_encoder = fake_text_encoder(kTinyTextDim, text_calls);
    return std::make_unique<WanGenerator>(dir(preset), o);
  }
  static fs::path root_;
};
fs::path FewStepTest::root_;

GenRequest request(const std::string& task, int steps, std::vector<double> guide, const std::string& sampler) {
  GenRequest r;
  r.task = task;
  r.prompt = "a red fox running through snow";
  r.negative = "blurry";
  r.width = 64;
  r.height = task == "i2v" ? 64 : 48;
  r.frames = 5;
  r.steps = steps;
  r.seed = 5;
  r.guide_scale = std::move(guide);
  r.sampler = sampler;
  if (task == "i2v") {  // a smooth 72x40 PPM
    std::string head = "P6\n72 40\n255\n";
    r.image.assign(head.begin(), head.end());
    for (int y = 0; y < 40; ++y) {
      for (int x = 0; x < 72; ++x) {
        r.image.push_back(static_cast<std::uint8_t>(255 * x / 71));
        r.image.push_back(static_cast<std::uint8_t>(255 * y / 39));
        r.image.push_back(static_cast<std::uint8_t>((x * 7 + y * 13) % 256));
      }
    }
  }
  return r;
}

struct Experts {
  std::unique_ptr<WanDit> hi, lo;
};
Experts load_experts(const fs::path& d) {
  Experts e;
  e.hi = std::make_unique<WanDit>(WanDit::load(CheckpointDir(d / "high_noise_model"), RunDtype::kFloat32, at::kCPU));
  e.lo = std::make_unique<WanDit>(WanDit::load(CheckpointDir(d / "low_noise_model"), RunDtype::kFloat32, at::kCPU));
  return e;
}

// The latents of `req` computed here from the model's plain forwards and a fresh sampler,
// starting from the generator's prepared state (noise, text, conditioning): the expert by
// the official rule, cond only where the scale is 1, else both branches and cfg_combine.
at::Tensor reference_latents(const WanGenerator& gen, const GenState& prepared, const Experts& ex,
                             const GenRequest& req) {
  const WanConfig& cfg = gen.config();
  FlowSampler s(parse_solver(req.sampler), req.steps, cfg.sample_shift);
  at::Tensor x = prepared.latent.clone();
  c10::optional<at::Tensor> y;
  if (prepared.y.defined()) y = prepared.y;
  while (!s.done()) {
    const int64_t t = s.timestep();
    const bool high = static_cast<double>(t) >= cfg.boundary * kNumTrainTimesteps;
    const double g = high ? prepared.guide_high : prepared.guide_low;
    const WanDit& dit = high ? *ex.hi : *ex.lo;
    const at::Tensor t_in = at::full({1}, t, at::TensorOptions().dtype(at::kLong));
    const at::Tensor c = dit.forward(x, t_in, prepared.context, prepared.seq_len, y);
    at::Tensor v = c;
    if (g != 1.0) v = cfg_combine(dit.forward(x, t_in, prepared.context_null, prepared.seq_len, y), c, g);
    x = s.step(v, x);
  }
  return x;
}

at::Tensor run_steps(WanGenerator& gen, GenState& st) {
  while (st.completed_steps() < st.total_steps()) gen.step(st);
  return st.latent;
}

int high_steps(const WanGenerator& gen, const GenState& st) {
  int n = 0;
  for (int e : gen.expert_of_step(st)) n += e == 0 ? 1 : 0;
  return n;
}

TEST_F(FewStepTest, GuidanceOneRunsOneForwardPerStepAndEqualsTheCondForward) {
  const Experts ex = load_experts(dir("tiny-t2v"));
  for (const std::string sampler : {"unipc", "euler"}) {
    int text_calls = 0;
    auto gen = make("tiny-t2v", &text_calls);
    const GenRequest req = request("t2v", 4, {1.0}, sampler);
    GenState st = gen->prepare(req);
    EXPECT_EQ(text_calls, 1) << sampler << ": the negative prompt was encoded for a job that never guides";
    EXPECT_FALSE(st.context_null.defined());
    EXPECT_EQ(gen->uncond_of_step(st), std::vector<bool>(4, false));
    const GenState prepared = st;  // tensors shared, never written in place
    run_steps(*gen, st);
    EXPECT_EQ(gen->block_calls(), 4 * gen->config().num_layers) << sampler << ": not one forward per step";
    EXPECT_TRUE(at::equal(st.latent, reference_latents(*gen, prepared, ex, req))) << sampler;
    // The same job guided differs (the test can tell the branches apart).
    auto guided = make("tiny-t2v");
    GenState g = guided->prepare(request("t2v", 4, {3.0}, sampler));
    run_steps(*guided, g);
    EXPECT_EQ(guided->block_calls(), 4 * 2 * guided->config().num_layers);
    EXPECT_FALSE(at::equal(g.latent, st.latent)) << sampler;
  }
}

// (low noise, high noise) = (1, 4): the high-noise steps guide, the low-noise ones run the cond
// branch alone; through an external CFG-forward hook the generator asks for what it needs.
TEST_F(FewStepTest, TwoScalesWithOneOneDropTheUncondBranchForThatExpertOnly) {
  const fs::path d = dir("tiny-t2v");
  const Experts ex = load_experts(d);
  int text_calls = 0;
  auto gen = make("tiny-t2v", &text_calls);
  const GenRequest req = request("t2v", 8, {1.0, 4.0}, "unipc");
  GenState st = gen->prepare(req);
  EXPECT_EQ(text_calls, 2);  // the high-noise steps need the negative prompt
  const int high = high_steps(*gen, st);
  ASSERT_GT(high, 0);
  ASSERT_LT(high, 8);
  std::vector<bool> want_uncond;
  for (int e : gen->expert_of_step(st)) want_uncond.push_back(e == 0);
  EXPECT_EQ(gen->uncond_of_step(st), want_uncond);
  const GenState prepared = st;
  run_steps(*gen, st);
  const int64_t L = gen->config().num_layers;
  EXPECT_EQ(gen->block_calls(), high * 2 * L + (8 - high) * L);
  EXPECT_TRUE(at::equal(st.latent, reference_latents(*gen, prepared, ex, req)));

  // The hook: told per step whether to run the uncond branch; returns none when not asked.
  std::vector<bool> asked;
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.text_encoder = fake_text_encoder(kTinyTextDim);
  o.cfg_forward = [&](const StepForwardInputs& in, const CancelCheck&) {
    asked.push_back(in.uncond);
    const WanDit& dit = in.high_noise ? *ex.hi : *ex.lo;
    at::Tensor c = dit.forward(in.x, in.t, in.context, in.seq_len, in.y);
    if (!in.uncond) return std::make_pair(c, at::Tensor());
    return std::make_pair(c, dit.forward(in.x, in.t, in.context_null, in.seq_len, in.y));
  };
  WanGenerator hooked(d, o);
  GenState hs = hooked.prepare(req);
  run_steps(hooked, hs);
  EXPECT_EQ(asked, want_uncond);
  EXPECT_TRUE(at::equal(hs.latent, st.latent));
}

// A guidance-1 checkpoint has no negative embedding; it resumes bitwise (and an Euler job
// resumes bitwise), with no text encode.
TEST_F(FewStepTest, GuidanceOneAndEulerJobsResumeBitwise) {
  for (const GenRequest& req : {request("t2v", 4, {1.0}, "euler"), request("t2v", 4, {3.0}, "euler"),
                                request("i2v", 4, {1.0}, "unipc")}) {
    const std::string preset = req.task == "i2v" ? "tiny-i2v" : "tiny-t2v";
    const std::string what = preset + " " + req.sampler + " guide " + std::to_string(req.guide_scale[0]);
    auto ref_gen = make(preset);
    GenState ref = ref_gen->prepare(req);
    const at::Tensor want = run_steps(*ref_gen, ref).clone();
    for (int k : {1, 2}) {
      auto gen = make(preset);
      GenState st = gen->prepare(req);
      for (int i = 0; i < k; ++i) gen->step(st);
      const auto blobs = gen->save_state(st);
      int text_calls = 0;
      auto again = make(preset, &text_calls);
      GenState r = again->resume(req, blobs);
      EXPECT_EQ(text_calls, 0) << what;
      EXPECT_EQ(r.context_null.defined(), req.guide_scale[0] != 1.0) << what;
      EXPECT_EQ(r.sampler->kind(), parse_solver(req.sampler)) << what;
      run_steps(*again, r);
      EXPECT_TRUE(at::equal(r.latent, want)) << what << " resumed after " << k;
    }
  }
  // A guided job's checkpoint without its negative embedding is refused, naming the entry.
  auto gen = make("tiny-t2v");
  const GenRequest req = request("t2v", 4, {3.0}, "unipc");
  GenState st = gen->prepare(req);
  gen->step(st);
  GenState unguided = make("tiny-t2v")->prepare(request("t2v", 4, {1.0}, "unipc"));
  auto blobs = gen->save_state(unguided);  // no context_null
  try {
    gen->resume(req, blobs);
    FAIL() << "resumed a guided job from a checkpoint without context_null";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context_null"), std::string::npos) << e.what();
  }
}

// Which expert each step of the generator runs, against the official rule (timestep >=
// boundary * 1000 -> high noise), for 4 and 8 steps, every sampler, t2v (0.875) and i2v (0.9).
TEST_F(FewStepTest, ExpertSwitchFollowsTheBoundaryAtFourAndEightSteps) {
  for (const std::string task : {"t2v", "i2v"}) {
    const fs::path d = dir(task == "t2v" ? "tiny-t2v" : "tiny-i2v");
    std::vector<char> seen;
    GeneratorOptions o;
    o.device = at::Device(at::kCPU);
    o.text_encoder = fake_text_encoder(kTinyTextDim);
    o.cfg_forward = [&](const StepForwardInputs& in, const CancelCheck&) {
      seen.push_back(in.high_noise ? 'h' : 'l');
      return std::make_pair(at::zeros_like(in.x), at::zeros_like(in.x));  // the dispatch is what is checked
    };
    WanGenerator gen(d, o);
    EXPECT_EQ(gen.config().boundary, task == "t2v" ? 0.875 : 0.9);
    for (const std::string sampler : {"unipc", "dpm++", "euler"}) {
      for (int steps : {4, 8}) {
        seen.clear();
        GenState st = gen.prepare(request(task, steps, {}, sampler));
        std::string rule;
        for (int64_t t : st.sampler->schedule().timesteps) {
          rule.push_back(static_cast<double>(t) >= gen.config().boundary * 1000 ? 'h' : 'l');
        }
        while (st.completed_steps() < st.total_steps()) gen.step(st);
        const std::string what = task + " " + sampler + " " + std::to_string(steps) + " steps";
        EXPECT_EQ(st.experts_run, rule) << what;
        EXPECT_EQ(std::string(seen.begin(), seen.end()), rule) << what;
        EXPECT_NE(rule.find('h'), std::string::npos) << what << ": no high-noise step";
        EXPECT_NE(rule.find('l'), std::string::npos) << what << ": no low-noise step";
      }
    }
  }
}

}  // namespace
