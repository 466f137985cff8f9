// T5Stream (umT5 layers streamed from the .pth through the pool) against the resident
// model::T5Encoder on the tiny umT5 that wand-make-model's t5 part writes (bf16 .pth,
// 2 layers, dim 64): bit-identical in fp32 and bf16, every layer read once, the device
// tier empty afterwards, the errors named. CPU (a CpuDeviceTier); label scheduler.
// Built a second time with WAND_T5_STREAM_GPU (wand_t5_stream_gpu_tests, labels scheduler + gpu):
// then only the CUDA case compiles in, which skips without a CUDA LibTorch and a GPU.
#include "scheduler/exec/t5_stream.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "model/formats/model_layout.h"
#include "model/formats/part_sources.h"
#include "model/make_model/parts.h"
#include "model/pth.h"
#include "model/t5_encoder.h"
#include "model/text_clean.h"
#include "model/tokenizer.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"
#if defined(WAND_T5_STREAM_GPU) && defined(WAND_HAVE_CUDA)
#include "memory/cuda/pinned_host.h"
#include "scheduler/exec/device_runtime.h"
#endif

namespace wand::sched::exec {
namespace {

namespace fs = std::filesystem;

class T5StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model::make::write_t5_part(dir_.path(), "tiny-t2v", 7);
    pth_ = (dir_.path() / "models_t5_umt5-xxl-enc-bf16.pth").string();
    tok_ = std::make_unique<model::Tokenizer>(model::Tokenizer::load((dir_.path() / "google" / "umt5-xxl").string()));
  }
  // ids / mask [2, 32] of two prompts (different lengths, shared tokens, padding).
  std::pair<at::Tensor, at::Tensor> batch() const {
    std::vector<int64_t> ids, mask;
    for (const char* p : {"a red kite over the sea at dawn", "a cat"}) {
      const model::TokenizedText t = tok_->encode(model::clean_text(p), 32);
      ids.insert(ids.end(), t.ids.begin(), t.ids.end());
      mask.insert(mask.end(), t.mask.begin(), t.mask.end());
    }
    return {at::tensor(ids, at::kLong).view({2, 32}), at::tensor(mask, at::kLong).view({2, 32})};
  }

  test::TempDir dir_;
  std::string pth_;
  std::unique_ptr<model::Tokenizer> tok_;
};

#ifndef WAND_T5_STREAM_GPU

T5StreamOptions cpu_options(memory::MemoryPool& pool, model::RunDtype run) {
  T5StreamOptions o;
  o.device_tier = pool.device_tier(0);
  o.run = run;
  return o;
}

TEST_F(T5StreamTest, Fp32EqualsResidentEncoderBitwise) {
  const model::T5Encoder ref = model::T5Encoder::load(pth_, model::RunDtype::kFloat32, at::kCPU);
  // Host and device tiers each hold two layers (+ slack): the encoder streams for real.
  memory::MemoryPool pool(test::tiny_pool_config(1 << 20, 1 << 20));
  T5Stream t5(pth_, pool, cpu_options(pool, model::RunDtype::kFloat32));
  ASSERT_EQ(t5.num_layers(), 2);
  EXPECT_LT(2 * t5.layer_bytes(0), std::uint64_t{1} << 20);
  auto [ids, mask] = batch();
  const at::Tensor want = ref.forward(ids, mask);
  const at::Tensor got = t5.forward(ids, mask);
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(got, want)) << "max |diff| " << (got - want).abs().max().item<float>();

  const auto want_ctx = ref.encode_texts(*tok_, {"a red kite", ""}, 64);
  const auto got_ctx = t5.encode_texts(*tok_, {"a red kite", ""}, 64);
  ASSERT_EQ(got_ctx.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(got_ctx[i].sizes(), want_ctx[i].sizes());
    EXPECT_TRUE(at::equal(got_ctx[i], want_ctx[i])) << "text " << i;
  }
  // Each layer's bytes requested once per pass: forward() is one, and encode_texts() runs
  // both texts through each layer in ONE pass (Note [Layer-major encode]); nothing left on
  // the device tier, only the distinct tokens' embedding rows read.
  const T5StreamStats& s = t5.stats();
  EXPECT_EQ(s.encodes, 2u);
  EXPECT_EQ(s.layers_run, 4u);
  EXPECT_EQ(s.bytes_requested, 2 * t5.total_layer_bytes());
  EXPECT_TRUE(pool.resident(pool.device_tier(0)).empty());
  std::set<int64_t> distinct(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  const std::uint64_t row = static_cast<std::uint64_t>(t5.config().dim) * 2;  // bf16 rows
  EXPECT_GE(s.embed_bytes_read, distinct.size() * row);
  EXPECT_LT(s.embed_bytes_read, static_cast<std::uint64_t>(t5.config().vocab) * row);
  const nlohmann::json j = t5.stats_json();
  EXPECT_EQ(j.at("layers_run").get<std::uint64_t>(), 4u);
  EXPECT_EQ(j.at("blobs").get<std::size_t>(), t5.num_blobs());
}

// issue 17: a diffusers text_encoder/ (UMT5EncoderModel shards, transformers naming; the same
// values as the .pth of that seed) streams through the pool from the shards' own byte ranges
// and encodes bit for bit as the .pth; a layer cut by the shard boundary becomes one blob per
// shard.
TEST_F(T5StreamTest, DiffusersTextEncoderStreamsLikeThePth) {
  test::TempDir dif;
  model::make::write_t5_part(dif.path(), "tiny-t2v", 7, "diffusers");
  ASSERT_FALSE(fs::exists(dif.path() / "models_t5_umt5-xxl-enc-bf16.pth"));
  model::formats::ModelLayout layout;
  layout.kind = model::formats::LayoutKind::kDiffusers;
  layout.dir = dif.path();
  const model::formats::PartFiles part = layout.text_encoder();
  ASSERT_EQ(part.naming, model::formats::PartNaming::kTransformers);
  ASSERT_GE(part.files.size(), 2u);  // sharded
  std::shared_ptr<const model::TensorSource> src = model::open_part(part);
  for (model::RunDtype run : {model::RunDtype::kFloat32, model::RunDtype::kBFloat16}) {
    memory::MemoryPool pool(test::tiny_pool_config(1 << 20, 1 << 20));
    T5StreamOptions a = cpu_options(pool, run), b = cpu_options(pool, run);
    a.name = "pth";
    b.name = "dif";
    T5Stream ref(pth_, pool, a);
    T5Stream got(src, pool, b);
    // safetensors stores a layer's tensors back to back (sorted keys): its blobs are exactly
    // the tensor bytes, while the .pth's carry the zip headers between them.
    for (int l = 0; l < got.num_layers(); ++l) {
      std::uint64_t tensor_bytes = 0;
      for (const std::string& n : model::T5BlockWeights::tensor_names(l)) tensor_bytes += src->info(n).nbytes;
      EXPECT_EQ(got.layer_bytes(l), tensor_bytes) << l;
      EXPECT_LE(got.layer_bytes(l), ref.layer_bytes(l)) << l;
    }
    EXPECT_GE(got.num_blobs(), static_cast<std::size_t>(got.num_layers()));
    auto [ids, mask] = batch();
    const at::Tensor x = ref.forward(ids, mask), y = got.forward(ids, mask);
    EXPECT_TRUE(at::equal(x, y)) << model::run_dtype_name(run);
    EXPECT_EQ(got.stats().bytes_requested, got.total_layer_bytes());
  }
}

TEST_F(T5StreamTest, Bf16EqualsResidentEncoderBitwise) {
  const model::T5Encoder ref = model::T5Encoder::load(pth_, model::RunDtype::kBFloat16, at::kCPU);
  memory::MemoryPool pool(test::tiny_pool_config(1 << 20, 1 << 20));
  T5Stream t5(pth_, pool, cpu_options(pool, model::RunDtype::kBFloat16));
  auto [ids, mask] = batch();
  const at::Tensor got = t5.forward(ids, mask);
  ASSERT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(got, ref.forward(ids, mask)));
}

TEST_F(T5StreamTest, ScatteredTensorsOneBlobEachStillExact) {
  // max_gap 0: the zip headers between entries split every tensor into its own blob
  // (the layout a release file with scattered storages gets).
  const model::T5Encoder ref = model::T5Encoder::load(pth_, model::RunDtype::kFloat32, at::kCPU);
  memory::MemoryPool pool(test::tiny_pool_config(1 << 20, 1 << 20));
  T5StreamOptions o = cpu_options(pool, model::RunDtype::kFloat32);
  o.max_gap_bytes = 0;
  o.prefetch_layers = 0;
  T5Stream t5(pth_, pool, o);
  EXPECT_EQ(t5.num_blobs(), 20u);
  auto [ids, mask] = batch();
  EXPECT_TRUE(at::equal(t5.forward(ids, mask), ref.forward(ids, mask)));
  // Back to back with the default gap: one blob per layer.
  T5StreamOptions d = cpu_options(pool, model::RunDtype::kFloat32);
  d.name = "t5b";
  T5Stream packed(pth_, pool, d);
  EXPECT_EQ(packed.num_blobs(), 2u);
}

TEST_F(T5StreamTest, BlobsDroppedWithTheStream) {
  memory::MemoryPool pool(test::tiny_pool_config(1 << 20, 1 << 20));
  {
    T5Stream t5(pth_, pool, cpu_options(pool, model::RunDtype::kFloat32));
    EXPECT_TRUE(pool.find_blob("t5.layer.0.0").has_value());
  }
  EXPECT_FALSE(pool.find_blob("t5.layer.0.0").has_value());
  // Same name again: registration succeeds (nothing left behind).
  T5Stream again(pth_, pool, cpu_options(pool, model::RunDtype::kFloat32));
  EXPECT_EQ(again.num_layers(), 2);
}

TEST_F(T5StreamTest, ErrorsNameTheProblem) {
  memory::MemoryPool pool(test::tiny_pool_config(1 << 20, 1 << 20));
  T5StreamOptions no_tier;
  try {
    T5Stream t5(pth_, pool, no_tier);
    FAIL() << "no device tier accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("device tier"), std::string::npos) << e.what();
  }
  T5Stream t5(pth_, pool, cpu_options(pool, model::RunDtype::kFloat32));
  const at::Tensor bad = at::full({1, 4}, t5.config().vocab, at::kLong);
  try {
    t5.forward(bad, at::ones({1, 4}, at::kLong));
    FAIL() << "token id outside the vocabulary accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadRequest);
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
  // A device tier (64 KiB) smaller than one layer (~94 KiB): the pool refuses the layer.
  memory::MemoryPool small(test::tiny_pool_config(1 << 20, 1 << 16));
  T5Stream tiny(pth_, small, cpu_options(small, model::RunDtype::kFloat32));
  ASSERT_GT(tiny.layer_bytes(0), std::uint64_t{1} << 16);
  auto [ids, mask] = batch();
  EXPECT_ANY_THROW(tiny.forward(ids, mask));
}

#else  // WAND_T5_STREAM_GPU

// On the card: layers in a CudaTier of three layers' room, pinned host staging, the stored bf16
// converted on the device. Same kernels on the same inputs as the resident encoder; the views
// differ from the resident tensors only in their addresses, so the results are compared
// bitwise (reported) and within 1e-5 (fp32) / 1e-2 (bf16) relative (asserted), in case a
// GEMM picks another algorithm for another pointer alignment.
TEST_F(T5StreamTest, CudaStreamedMatchesResidentOnTheCard) {
#if !defined(WAND_EXEC_TORCH_CUDA) || !defined(WAND_HAVE_CUDA)
  GTEST_SKIP() << "LibTorch without CUDA";
#else
  if (!torch_cuda_available()) GTEST_SKIP() << "no GPU";
  const at::Device cuda(at::kCUDA, 0);
  auto [ids, mask] = batch();
  for (model::RunDtype run : {model::RunDtype::kFloat32, model::RunDtype::kBFloat16}) {
    SCOPED_TRACE(model::run_dtype_name(run));
    const model::T5Encoder ref = model::T5Encoder::load(pth_, run, cuda);
    nlohmann::json pj = {{"host", {{"bytes", 4ull << 20}, {"pinned", true}}},
                         {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", 4ull << 20}, {"backend", "cuda"}}})},
                         {"io", {{"engine", "psync"}}}};
    memory::MemoryPool pool(memory::PoolConfig::from_json(pj), memory::cuda::pool_deps());
    T5StreamOptions o;
    o.device_tier = pool.device_tier(0);
    o.cuda_device = 0;
    o.run = run;
    T5Stream t5(pth_, pool, o);
    const at::Tensor want = ref.forward(ids.to(cuda), mask.to(cuda)).to(at::kCPU, at::kFloat);
    const at::Tensor got = t5.forward(ids, mask).to(at::kCPU, at::kFloat);
    ASSERT_EQ(got.sizes(), want.sizes());
    const double rel = ((got - want).norm() / want.norm()).item<double>();
    RecordProperty(std::string("bitwise_") + model::run_dtype_name(run), at::equal(got, want) ? "yes" : "no");
    EXPECT_LT(rel, run == model::RunDtype::kFloat32 ? 1e-5 : 1e-2) << "relative L2 " << rel;
    EXPECT_EQ(t5.stats().layers_run, 2u);
    EXPECT_EQ(t5.stats().bytes_requested, t5.total_layer_bytes());
    EXPECT_TRUE(pool.resident(pool.device_tier(0)).empty());
  }
#endif
}

#endif  // WAND_T5_STREAM_GPU

}  // namespace
}  // namespace wand::sched::exec
