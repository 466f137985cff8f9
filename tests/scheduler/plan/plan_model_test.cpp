// model_shape_from_dir on tiny models written by wand-make-model's make_model() (LibTorch),
// checked against model::WanConfig's tensor lists.
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "model/make_model/make_model.h"
#include "model/wan_config.h"
#include "scheduler/plan/cost_model.h"
#include "scheduler/plan/model_shape.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::plan {
namespace {

std::uint64_t params_of(const std::vector<std::pair<std::string, std::vector<int64_t>>>& ts) {
  std::uint64_t n = 0;
  for (const auto& [name, shape] : ts) {
    std::uint64_t k = 1;
    for (auto d : shape) k *= static_cast<std::uint64_t>(d);
    n += k;
  }
  return n;
}

void check_preset(const std::string& preset, std::size_t experts) {
  wand::test::TempDir tmp;
  model::make::MakeModelOptions o;
  o.preset = preset;
  o.out = tmp.path() / preset;
  o.seed = 3;
  model::make::make_model(o);
  const ModelShape m = model_shape_from_dir(o.out);
  EXPECT_EQ(m.variant, preset);
  ASSERT_EQ(m.experts.size(), experts);
  const auto cfg_file = experts == 2 ? o.out / "high_noise_model" / "config.json" : o.out / "config.json";
  std::ifstream in(cfg_file);
  const model::WanConfig cfg = model::WanConfig::from_checkpoint(nlohmann::json::parse(in), cfg_file.string());
  EXPECT_EQ(m.num_layers, cfg.num_layers);
  EXPECT_EQ(m.text_dim, cfg.text_dim);
  for (const auto& e : m.experts) {
    for (int64_t b = 0; b < cfg.num_layers; ++b) {
      EXPECT_EQ(e.block_params[static_cast<std::size_t>(b)], params_of(cfg.block_tensors(b)));
      EXPECT_EQ(e.block_stored_bytes[static_cast<std::size_t>(b)], 4 * params_of(cfg.block_tensors(b)));  // fp32
    }
    EXPECT_EQ(e.non_block_params, params_of(cfg.non_block_tensors()));
    EXPECT_EQ(e.stored_dtype, "F32");
  }
  EXPECT_EQ(m.t5_bytes, std::filesystem::file_size(m.t5_file));
  EXPECT_GT(m.t5_bytes, 0u);
  EXPECT_EQ(m.vae_bytes, std::filesystem::file_size(m.vae_file));
  EXPECT_EQ(m.vae_stride_h, cfg.vae_stride_h);
  EXPECT_DOUBLE_EQ(m.boundary, cfg.boundary);
}

TEST(PlanModelShapeMakeModel, TinyT2vFromWandMakeModel) { check_preset("tiny-t2v", 2); }
TEST(PlanModelShapeMakeModel, TinyTi2vFromWandMakeModel) { check_preset("tiny-ti2v", 1); }

// The diffusers layout (model_index.json, transformer/, transformer_2/) plans like the release
// layout of the same model: same variant, boundary, bytes per block, umT5 / VAE files.
void check_diffusers(const std::string& preset) {
  wand::test::TempDir tmp;
  model::make::MakeModelOptions o;
  o.preset = preset;
  o.seed = 3;
  o.dtype = at::kBFloat16;  // as the Wan-AI/*-Diffusers repositories store it
  o.out = tmp.path() / "release";
  model::make::make_model(o);
  o.out = tmp.path() / "diffusers";
  o.layout = "diffusers";
  model::make::make_model(o);
  const ModelShape r = model_shape_from_dir(tmp.path() / "release");
  const ModelShape d = model_shape_from_dir(tmp.path() / "diffusers");
  EXPECT_EQ(d.variant, r.variant);
  EXPECT_DOUBLE_EQ(d.boundary, r.boundary);
  EXPECT_EQ(d.num_layers, r.num_layers);
  EXPECT_EQ(d.text_len, r.text_len);
  ASSERT_EQ(d.experts.size(), r.experts.size());
  EXPECT_EQ(d.experts[0].name, "transformer");
  if (d.experts.size() == 2) EXPECT_EQ(d.experts[1].name, "transformer_2");
  for (std::size_t e = 0; e < d.experts.size(); ++e) {
    EXPECT_EQ(d.experts[e].block_stored_bytes, r.experts[e].block_stored_bytes);
    EXPECT_EQ(d.experts[e].non_block_stored_bytes, r.experts[e].non_block_stored_bytes);
    EXPECT_EQ(d.experts[e].stored_dtype, "BF16");
    EXPECT_EQ(d.expert_run_bytes(e), r.expert_run_bytes(e));
  }
  // umT5 and VAE from text_encoder/ and vae/ (Note [Diffusers parts]): the same tensors in
  // other containers (safetensors shards instead of a zip .pth), so within a few percent.
  EXPECT_EQ(d.t5_file, tmp.path() / "diffusers" / "text_encoder");
  EXPECT_EQ(d.vae_file, tmp.path() / "diffusers" / "vae");
  EXPECT_NEAR(static_cast<double>(d.t5_bytes), static_cast<double>(r.t5_bytes), 0.1 * static_cast<double>(r.t5_bytes));
  EXPECT_NEAR(static_cast<double>(d.vae_bytes), static_cast<double>(r.vae_bytes), 0.1 * static_cast<double>(r.vae_bytes));
  // Without its VAE the planner says what a diffusers folder needs.
  std::filesystem::remove_all(d.vae_file);
  try {
    model_shape_from_dir(tmp.path() / "diffusers");
    FAIL() << "a diffusers folder without its VAE file planned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vae/"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(r.vae_file.filename().string()), std::string::npos) << e.what();
  }
}

// ComfyUI single files named by wand-model.json (Note [Model manifest]) plan like the release:
// the experts' config from their shapes, the same stored bytes per block.
void check_comfyui(const std::string& preset) {
  wand::test::TempDir tmp;
  for (const char* layout : {"release", "comfyui"}) {
    model::make::MakeModelOptions o;
    o.preset = preset;
    o.out = tmp.path() / layout;
    o.layout = layout;
    o.dtype = at::kHalf;
    model::make::make_model(o);
  }
  const ModelShape r = model_shape_from_dir(tmp.path() / "release");
  const ModelShape c = model_shape_from_dir(tmp.path() / "comfyui");
  EXPECT_EQ(c.variant, r.variant);
  EXPECT_EQ(c.model_type, r.model_type);
  EXPECT_DOUBLE_EQ(c.boundary, r.boundary);
  EXPECT_EQ(c.num_layers, r.num_layers);
  ASSERT_EQ(c.experts.size(), r.experts.size());
  for (std::size_t e = 0; e < c.experts.size(); ++e) {
    EXPECT_EQ(c.experts[e].block_stored_bytes, r.experts[e].block_stored_bytes);
    EXPECT_EQ(c.experts[e].non_block_stored_bytes, r.experts[e].non_block_stored_bytes);
    EXPECT_EQ(c.experts[e].stored_dtype, "F16");
    EXPECT_EQ(c.expert_run_bytes(e), r.expert_run_bytes(e));
  }
  EXPECT_EQ(c.t5_file.filename(), "umt5_xxl_bf16.safetensors");
  EXPECT_EQ(c.t5_bytes, std::filesystem::file_size(c.t5_file));
  EXPECT_EQ(c.vae_bytes, std::filesystem::file_size(c.vae_file));
  // A manifest naming a file that is not there: the planner names the manifest field.
  std::filesystem::remove(c.vae_file);
  try {
    model_shape_from_dir(tmp.path() / "comfyui");
    FAIL() << "a comfyui model without its VAE file planned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'vae'"), std::string::npos) << e.what();
  }
}

TEST(PlanModelShapeMakeModel, ComfyuiTinyT2vPlansLikeTheRelease) { check_comfyui("tiny-t2v"); }
TEST(PlanModelShapeMakeModel, ComfyuiTinyTi2vPlansLikeTheRelease) { check_comfyui("tiny-ti2v"); }
TEST(PlanModelShapeMakeModel, DiffusersTinyT2vPlansLikeTheRelease) { check_diffusers("tiny-t2v"); }
TEST(PlanModelShapeMakeModel, DiffusersTinyTi2vPlansLikeTheRelease) { check_diffusers("tiny-ti2v"); }

// An fp8_scaled model (wand-make-model --dtype fp8): the planner counts what the store holds
// of it as stored (fp8 weights + their per-tensor scales; the scales and the marker are not
// parameters), the same bytes as weights_dtype "fp8" on the bf16 model but for the scales.
TEST(PlanModelShapeMakeModel, Fp8ScaledModelIsPlannedAsStored) {
  wand::test::TempDir tmp;
  model::make::MakeModelOptions o;
  o.preset = "tiny-t2v";
  o.out = tmp.path() / "fp8";
  o.seed = 3;
  o.dtype = at::kBFloat16;
  o.fp8 = "scaled";
  model::make::make_model(o);
  o.out = tmp.path() / "bf16";
  o.fp8 = "";
  model::make::make_model(o);
  const ModelShape f = model_shape_from_dir(tmp.path() / "fp8");
  const ModelShape b = model_shape_from_dir(tmp.path() / "bf16");
  const ModelShape q = model_shape_from_dir(tmp.path() / "bf16", "fp8");
  const ModelShape r = model_shape_from_dir(tmp.path() / "fp8", "run");
  ASSERT_EQ(f.experts.size(), 2u);
  const std::uint64_t D = static_cast<std::uint64_t>(f.dim), F = static_cast<std::uint64_t>(f.ffn_dim);
  const std::uint64_t fp8_params = 8 * D * D + 2 * D * F;
  for (std::size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(f.experts[e].block_params, b.experts[e].block_params);
    EXPECT_EQ(f.experts[e].non_block_params, b.experts[e].non_block_params);
    EXPECT_EQ(f.experts[e].stored_dtype, "mixed");
    for (std::size_t i = 0; i < f.experts[e].block_params.size(); ++i) {
      const std::uint64_t p = b.experts[e].block_params[i];
      EXPECT_EQ(f.block_run_bytes(e, i), fp8_params + 2 * (p - fp8_params) + 10 * 4);  // 10 scalar scales
      EXPECT_EQ(q.block_run_bytes(e, i), fp8_params + 2 * (p - fp8_params) + 4 * (8 * D + F + D));
      EXPECT_EQ(r.block_run_bytes(e, i), 2 * p);
      EXPECT_EQ(b.block_run_bytes(e, i), 2 * p);
    }
  }
  EXPECT_EQ(f.max_block_dequant_bytes(), 2 * fp8_params);
}

}  // namespace
}  // namespace wand::sched::plan
