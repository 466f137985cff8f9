// umT5 encoder against the float64 golden reference (shared/golden/t5):
// float32 on CPU within the case's tolerances; bf16 (official numerics) on CPU
// within 1e-2 relative L2 (the CUDA run is t5_gpu_test.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "common/error.h"
#include "common/torch_compat.h"
#include "model/golden/golden.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/t5_encoder.h"
#include "tests/golden_dir.h"

using namespace wand::model;

namespace {

const std::string kCaseDir = wand::test::golden_root().string() + "/t5";

std::map<std::string, at::Tensor> reference() {
  return load_safetensors(kCaseDir + "/outputs.safetensors");
}

double rel_l2(const at::Tensor& got, const at::Tensor& ref) {
  at::Tensor g = got.to(at::kCPU, at::kDouble), r = ref.to(at::kDouble);
  return (g - r).norm().item<double>() / r.norm().item<double>();
}

}  // namespace

TEST(T5Golden, Float32MatchesReferenceWithinCaseTolerances) {
  golden::Case c = golden::load_case(kCaseDir);
  golden::Outputs out = golden::run_case(kCaseDir);
  auto ref = reference();
  // Integer outputs are exact.
  for (const char* n : {"rel_buckets", "seq_lens"}) {
    ASSERT_TRUE(out.count(n) && ref.count(n)) << n;
    EXPECT_TRUE(at::equal(out.at(n), ref.at(n))) << n << "\n" << out.at(n) << "\n" << ref.at(n);
  }
  const auto& tol = c.spec.at("tolerances_fp32");
  ASSERT_EQ(tol.size(), 5u);
  for (auto it = tol.begin(); it != tol.end(); ++it) {
    const std::string& n = it.key();
    ASSERT_TRUE(out.count(n) && ref.count(n)) << n;
    const at::Tensor g = out.at(n), r = ref.at(n);
    ASSERT_EQ(g.sizes(), r.sizes()) << n;
    const double atol = it->at("atol").get<double>(), rtol = it->at("rtol").get<double>();
    at::Tensor excess = (g - r).abs() - (atol + rtol * r.abs());
    EXPECT_LE(excess.max().item<double>(), 0.0)
        << n << ": max |err| " << (g - r).abs().max().item<double>() << " atol " << atol;
  }
}

TEST(T5Golden, BucketTableMatchesReferenceDoc) {
  // Spot values of the table in wan22-reference.md §5.3 (r = key - query).
  at::Tensor b = T5Encoder::relative_buckets(1, 200);  // query 0, keys 0..199: r = j
  at::Tensor n = T5Encoder::relative_buckets(200, 1);  // keys 0, queries 0..199: r = -i
  auto at_r = [&](int64_t r) { return r >= 0 ? b[0][r].item<int64_t>() : n[-r][0].item<int64_t>(); };
  EXPECT_EQ(at_r(0), 0);
  EXPECT_EQ(at_r(-7), 7);
  EXPECT_EQ(at_r(7), 23);
  EXPECT_EQ(at_r(-11), 8);
  EXPECT_EQ(at_r(12), 25);
  EXPECT_EQ(at_r(-16), 10);
  EXPECT_EQ(at_r(22), 26);
  EXPECT_EQ(at_r(23), 27);
  EXPECT_EQ(at_r(-45), 12);
  EXPECT_EQ(at_r(46), 29);
  EXPECT_EQ(at_r(-90), 14);
  EXPECT_EQ(at_r(91), 31);
  EXPECT_EQ(at_r(-199), 15);
}

namespace {
void check_bf16(at::Device device) {
  golden::Case c = golden::load_case(kCaseDir);
  T5Encoder enc = T5Encoder::load(kCaseDir + "/models_t5_umt5-xxl-enc-bf16.pth", RunDtype::kBFloat16, device);
  const at::Tensor ids = c.inputs.at("ids").to(device), mask = c.inputs.at("mask").to(device);
  at::Tensor out = enc.forward(ids, mask);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  auto ref = reference();
  const auto ctx = enc.encode(ids, mask);
  ASSERT_EQ(ctx.size(), 2u);
  const double e_out = rel_l2(out, ref.at("encoder_out"));
  const double e0 = rel_l2(ctx[0], ref.at("context_0"));
  const double e1 = rel_l2(ctx[1], ref.at("context_1"));
  std::printf("umt5 bf16 device=%s rel_l2 encoder_out=%.3e context_0=%.3e context_1=%.3e\n",
              device.str().c_str(), e_out, e0, e1);
  EXPECT_LE(e_out, 1e-2);
  EXPECT_LE(e0, 1e-2);
  EXPECT_LE(e1, 1e-2);
  // bf16 is really in use: the result differs from the float32 run.
  T5Encoder f32 = T5Encoder::load(kCaseDir + "/models_t5_umt5-xxl-enc-bf16.pth", RunDtype::kFloat32, device);
  EXPECT_GT(rel_l2(out, f32.forward(ids, mask).to(at::kDouble)), 1e-5);
}
}  // namespace

TEST(T5Golden, Bfloat16OnCpuWithinOnePercent) { check_bf16(at::kCPU); }

TEST(T5Encoder, RejectsBadCheckpointsAndInputs) {
  // A .pth without umT5 keys.
  const std::string p = ::testing::TempDir() + "/not_t5.pth";
  {
    PthWriter w(p);
    w.declare("token_embedding.weight", at::kBFloat16, {10, 8});
    w.write("token_embedding.weight", at::zeros({10, 8}, at::kBFloat16));
    w.finish();
  }
  try {
    T5Encoder::load(p, RunDtype::kFloat32, at::kCPU);
    ADD_FAILURE() << "accepted a checkpoint without blocks";
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), wand::ErrorCode::kModelFormat);
    EXPECT_NE(std::string(e.what()).find("blocks.0"), std::string::npos) << e.what();
  }
  T5Encoder enc = T5Encoder::load(kCaseDir + "/models_t5_umt5-xxl-enc-bf16.pth", RunDtype::kFloat32, at::kCPU);
  EXPECT_EQ(enc.config().vocab, 300);
  EXPECT_EQ(enc.config().num_heads, 4);
  EXPECT_EQ(enc.config().dim_ffn, 160);
  EXPECT_EQ(enc.num_layers(), 2);
  at::Tensor ids = at::full({1, 4}, 300, at::kLong);  // out of vocabulary
  EXPECT_THROW(enc.forward(ids, at::ones({1, 4}, at::kLong)), wand::Error);
  EXPECT_THROW(T5Encoder::load(kCaseDir + "/models_t5_umt5-xxl-enc-bf16.pth", RunDtype::kFloat16, at::kCPU),
               wand::Error);
}

TEST(T5Encoder, StagedBlocksMatchForward) {
  // An executor streams block weights: load without blocks, pass each block's
  // T5BlockWeights; the result equals forward() bit for bit.
  golden::Case c = golden::load_case(kCaseDir);
  const std::string pth = kCaseDir + "/models_t5_umt5-xxl-enc-bf16.pth";
  PthFile src(pth);
  T5Encoder full = T5Encoder::load(src, RunDtype::kFloat32, at::kCPU);
  T5Encoder staged = T5Encoder::load(src, RunDtype::kFloat32, at::kCPU, /*load_blocks=*/false);
  const at::Tensor ids = c.inputs.at("ids"), mask = c.inputs.at("mask");
  EXPECT_THROW(staged.forward(ids, mask), wand::Error);  // no blocks held
  at::Tensor x = staged.embed(ids);
  for (int i = 0; i < staged.num_layers(); ++i) {
    x = staged.block(i, x, mask, T5BlockWeights::from(src, i, RunDtype::kFloat32, at::kCPU));
  }
  x = staged.final_norm(x);
  EXPECT_TRUE(at::equal(x, full.forward(ids, mask)));
  EXPECT_EQ(T5BlockWeights::tensor_names(1).size(), 10u);
  for (const auto& n : T5BlockWeights::tensor_names(1)) EXPECT_TRUE(src.contains(n)) << n;
}
