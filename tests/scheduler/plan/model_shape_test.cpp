// model_shape_from_dir on release-layout directories written without LibTorch (sparse data):
// the real A14B / ti2v geometry, and malformed headers.
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "model/safetensors_header.h"
#include "scheduler/plan/model_shape.h"
#include "tests/scheduler/plan/model_dir_writer.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::plan {
namespace {

TEST(PlanModelShape, A14BReleaseLayoutGivesTheReferenceByteCounts) {
  wand::test::TempDir tmp;
  const auto dir = tmp.path() / "a14b";
  test::write_model_dir(dir, test::Geometry::t2v_a14b(), "BF16", test::kT5Bytes, test::kVae21Bytes);
  const ModelShape m = model_shape_from_dir(dir);
  EXPECT_EQ(m.variant, "t2v-A14B");
  ASSERT_EQ(m.experts.size(), 2u);
  EXPECT_EQ(m.num_layers, 40);
  EXPECT_EQ(m.num_heads, 40);
  for (const auto& e : m.experts) {
    ASSERT_EQ(e.block_params.size(), 40u);
    for (auto p : e.block_params) EXPECT_EQ(p, 351394304u);  // wan22-reference.md §1.3
    EXPECT_EQ(e.non_block_params, 232719424u);
    EXPECT_EQ(e.stored_dtype, "BF16");
    EXPECT_EQ(e.stored_bytes(), 2u * 14288491584u);
  }
  EXPECT_EQ(m.max_block_run_bytes(), 2u * 351394304u);
  EXPECT_EQ(m.expert_run_bytes(0), 2u * 14288491584u);
  EXPECT_EQ(m.t5_bytes, test::kT5Bytes);
  EXPECT_EQ(m.vae_bytes, test::kVae21Bytes);
  EXPECT_DOUBLE_EQ(m.boundary, 0.875);
  EXPECT_EQ(m.vae_stride_h, 8);
  EXPECT_FALSE(m.experts_share_shards);
}

TEST(PlanModelShape, Ti2vAtTheRootInFp32) {
  wand::test::TempDir tmp;
  const auto dir = tmp.path() / "ti2v";
  test::write_model_dir(dir, test::Geometry::ti2v_5b(), "F32", test::kT5Bytes, test::kVae22Bytes);
  const ModelShape m = model_shape_from_dir(dir);
  EXPECT_EQ(m.variant, "ti2v-5B");
  ASSERT_EQ(m.experts.size(), 1u);
  EXPECT_EQ(m.experts[0].block_params[0], 163656704u);
  EXPECT_EQ(m.experts[0].non_block_params, 90086592u);
  EXPECT_EQ(m.experts[0].stored_dtype, "F32");
  EXPECT_EQ(m.experts[0].block_stored_bytes[0], 4u * 163656704u);
  EXPECT_EQ(m.max_block_run_bytes(), 2u * 163656704u);  // planned in the bf16 run dtype
  EXPECT_EQ(m.vae_stride_h, 16);
  EXPECT_EQ(m.vae_file.filename(), "Wan2.2_VAE.pth");
}

TEST(PlanModelShape, TruncatedHeaderIsAClearError) {
  wand::test::TempDir tmp;
  const auto dir = tmp.path() / "m";
  test::write_model_dir(dir, test::Geometry::tiny_t2v(), "F32", 1000, 1000);
  const auto shard = dir / "low_noise_model" / "diffusion_pytorch_model-00002-of-00002.safetensors";
  // Keep the length field and 10 bytes of the JSON header.
  std::string bytes;
  {
    std::ifstream in(shard, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  {
    std::ofstream out(shard, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), 18);
  }
  try {
    model_shape_from_dir(dir);
    FAIL() << "a truncated header was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
    const std::string msg = e.what();
    EXPECT_NE(msg.find(shard.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated safetensors header"), std::string::npos) << msg;
  }
  // A file shorter than the length field.
  { std::ofstream(shard, std::ios::binary | std::ios::trunc) << "abc"; }
  EXPECT_THROW(model::read_safetensors_header(shard.string()), Error);
  // Header intact, data cut short.
  {
    std::ofstream out(shard, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 100));
  }
  try {
    model::read_safetensors_header(shard.string());
    FAIL() << "cut data accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(truncated)"), std::string::npos) << e.what();
  }
}

TEST(PlanModelShape, MissingPartsNameTheFile) {
  wand::test::TempDir tmp;
  const auto dir = tmp.path() / "m";
  test::write_model_dir(dir, test::Geometry::tiny_t2v(), "BF16", 1000, 1000);
  std::filesystem::remove(dir / "models_t5_umt5-xxl-enc-bf16.pth");
  try {
    model_shape_from_dir(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("models_t5_umt5-xxl-enc-bf16.pth"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "high_noise_model" / "config.json") << R"({"model_type": "t2v", "dim": 64})";
  try {
    model_shape_from_dir(dir);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("high_noise_model/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ffn_dim"), std::string::npos) << msg;
  }
}

// weights_dtype "fp8" (Note [fp8 stored dtype]): the store holds each block's 8 attention
// weights and 2 FFN weights in fp8 (1 byte a weight) with one fp32 scale a row, the rest in
// bf16, so both A14B experts take 29.07 GB (27.1 GiB) of host memory instead of 57.2 GB.
TEST(PlanModelShape, Fp8WeightsHalveTheA14BHostNeed) {
  wand::test::TempDir tmp;
  const auto dir = tmp.path() / "a14b";
  test::write_model_dir(dir, test::Geometry::t2v_a14b(), "BF16", test::kT5Bytes, test::kVae21Bytes);
  const ModelShape bf16 = model_shape_from_dir(dir);
  const ModelShape fp8 = model_shape_from_dir(dir, "fp8");
  EXPECT_EQ(fp8.weights_dtype, "fp8");
  const std::uint64_t D = 5120, F = 13824;
  const std::uint64_t fp8_params = 8 * D * D + 2 * D * F;  // 351,272,960 of the block's 351,394,304
  const std::uint64_t rows = 8 * D + F + D;
  const std::uint64_t block = fp8_params + 2 * (351394304u - fp8_params) + 4 * rows;
  EXPECT_EQ(fp8.max_block_run_bytes(), block);
  EXPECT_EQ(fp8.max_block_dequant_bytes(), 2 * fp8_params);
  EXPECT_EQ(bf16.max_block_dequant_bytes(), 0u);
  EXPECT_EQ(fp8.expert_run_bytes(0), 40 * block + 2u * 232719424u);  // non-block weights stay bf16
  EXPECT_EQ(fp8.expert_run_bytes(0) + fp8.expert_run_bytes(1), 29071298816u);
  EXPECT_EQ(bf16.expert_run_bytes(0), 2u * 14288491584u);
  EXPECT_EQ(fp8.to_json().at("weights_dtype").get<std::string>(), "fp8");
  EXPECT_EQ(model_shape_from_dir(dir, "run").max_block_run_bytes(), bf16.max_block_run_bytes());
  try {
    model_shape_from_dir(dir, "int4");
    ADD_FAILURE() << "int4 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int4"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wand::sched::plan
