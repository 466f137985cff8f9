// DiT family unit tests: checkpoint validation errors, stage API == forward,
// chunking, bf16 mode, make-model presets.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/make_model/make_model.h"
#include "model/safetensors.h"
#include "tests/model/golden_compare.h"
#include "tests/golden_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace wand::model;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("wand_dit_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// A tiny t2v expert written by our writer (2 shards + index).
fs::path write_tiny_expert(const fs::path& dir, const std::string& preset = "tiny-t2v") {
  WanConfig cfg = WanConfig::from_preset(preset, 64);
  const uint64_t bytes = static_cast<uint64_t>(cfg.num_params()) * 4;
  make::write_dit_expert(dir, cfg, at::kFloat, 7, bytes * 3 / 5);
  return dir;
}

std::string error_of(const fs::path& dir, wand::ErrorCode* code = nullptr) {
  try {
    CheckpointDir ck(dir);
  } catch (const wand::Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

void write_json(const fs::path& p, const nlohmann::json& j) { std::ofstream(p) << j.dump(2); }

// The whole state dict of a dir, as one map (tiny models only).
std::map<std::string, at::Tensor> all_tensors(const fs::path& dir) {
  CheckpointDir ck(dir);
  std::map<std::string, at::Tensor> m;
  for (const auto& n : ck.names()) m[n] = ck.load(n);
  return m;
}

void make_single_file(const fs::path& dir, const std::map<std::string, at::Tensor>& tensors, const fs::path& cfg_from) {
  fs::create_directories(dir);
  fs::copy_file(cfg_from / "config.json", dir / "config.json");
  save_safetensors((dir / CheckpointDir::kSingleName).string(), tensors, {{"format", "pt"}});
}

TEST(CheckpointDir, ReadsShardedExpertWithInfo) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  CheckpointDir ck(d);
  EXPECT_EQ(ck.config().variant, "tiny-t2v");
  EXPECT_EQ(ck.config().text_dim, 64);
  EXPECT_EQ(ck.shard_paths().size(), 2u);
  EXPECT_EQ(ck.names().size(), static_cast<size_t>(15 + 27 * 2));
  const TensorInfo& ti = ck.info("blocks.1.ffn.0.weight");
  EXPECT_EQ(ti.shape, (std::vector<int64_t>{160, 64}));
  EXPECT_EQ(ti.nbytes, 160u * 64u * 4u);
  // The byte range named by info() holds exactly the tensor load() returns.
  std::vector<float> raw(160 * 64);
  read_exact(ti.path, ti.offset, raw.data(), ti.nbytes);
  at::Tensor direct = at::from_blob(raw.data(), {160, 64}, at::kFloat);
  EXPECT_TRUE(at::equal(direct, ck.load("blocks.1.ffn.0.weight")));
  EXPECT_EQ(ck.load("blocks.1.ffn.0.weight", at::kBFloat16).scalar_type(), at::kBFloat16);
  // Index json: diffusers layout, total_size = sum of tensor bytes.
  auto idx = read_json(d / CheckpointDir::kIndexName);
  uint64_t total = 0;
  for (const auto& n : ck.names()) total += ck.info(n).nbytes;
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(idx["weight_map"]["head.modulation"].get<std::string>(),
            "diffusion_pytorch_model-00002-of-00002.safetensors");
}

TEST(CheckpointDir, ReadsGoldenCheckpoint) {
  const fs::path d = wand::test::golden_root() / "dit_t2v" / "high_noise_model";
  WAND_REQUIRE_DATA(d);
  CheckpointDir ck(d);
  EXPECT_EQ(ck.config().variant, "tiny-t2v");
  EXPECT_EQ(ck.config().text_dim, 4096);  // not stored: the default
  EXPECT_EQ(ck.config().ffn_dim, 160);
}

TEST(CheckpointDir, TruncatedShardNamesTheFile) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  const fs::path shard = d / "diffusion_pytorch_model-00002-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 100);
  wand::ErrorCode code{};
  const std::string msg = error_of(d, &code);
  EXPECT_EQ(code, wand::ErrorCode::kModelFormat) << msg;
  EXPECT_NE(msg.find("diffusion_pytorch_model-00002-of-00002.safetensors"), std::string::npos) << msg;
}

TEST(CheckpointDir, MissingKeyNamesFileAndKey) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  auto t = all_tensors(d);
  t.erase("blocks.1.cross_attn.norm_k.weight");
  make_single_file(tmp.path() / "single", t, d);
  wand::ErrorCode code{};
  const std::string msg = error_of(tmp.path() / "single", &code);
  EXPECT_EQ(code, wand::ErrorCode::kModelFormat);
  EXPECT_NE(msg.find("blocks.1.cross_attn.norm_k.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find(CheckpointDir::kSingleName), std::string::npos) << msg;
  // Same through the index: drop the key from weight_map.
  auto idx = read_json(d / CheckpointDir::kIndexName);
  idx["weight_map"].erase("time_embedding.2.bias");
  write_json(d / CheckpointDir::kIndexName, idx);
  const std::string msg2 = error_of(d, &code);
  EXPECT_NE(msg2.find("time_embedding.2.bias"), std::string::npos) << msg2;
  EXPECT_NE(msg2.find(CheckpointDir::kIndexName), std::string::npos) << msg2;
}

TEST(CheckpointDir, UnexpectedKeyNamesFileAndKey) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  auto t = all_tensors(d);
  t["blocks.2.modulation"] = at::zeros({1, 6, 64});  // a third block in a 2-layer model
  make_single_file(tmp.path() / "single", t, d);
  wand::ErrorCode code{};
  const std::string msg = error_of(tmp.path() / "single", &code);
  EXPECT_EQ(code, wand::ErrorCode::kModelFormat);
  EXPECT_NE(msg.find("unexpected key 'blocks.2.modulation'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(CheckpointDir::kSingleName), std::string::npos) << msg;
}

TEST(CheckpointDir, MisShapedKeyNamesFileKeyAndShapes) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  auto t = all_tensors(d);
  t["blocks.0.ffn.2.weight"] = at::zeros({64, 161});
  make_single_file(tmp.path() / "single", t, d);
  const std::string msg = error_of(tmp.path() / "single");
  EXPECT_NE(msg.find("blocks.0.ffn.2.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 161]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 160]"), std::string::npos) << msg;
  EXPECT_NE(msg.find(CheckpointDir::kSingleName), std::string::npos) << msg;
}

TEST(CheckpointDir, BadConfigNamesField) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  auto cfg = read_json(d / "config.json");
  cfg["in_dim"] = 17;
  write_json(d / "config.json", cfg);
  std::string msg = error_of(d);
  EXPECT_NE(msg.find("in_dim"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  cfg.erase("in_dim");
  write_json(d / "config.json", cfg);
  msg = error_of(d);
  EXPECT_NE(msg.find("missing field 'in_dim'"), std::string::npos) << msg;
}

TEST(CheckpointDir, SharedExpertsResolveRelativeShards) {
  TempDir tmp;
  make::MakeModelOptions o;
  o.preset = "tiny-i2v";
  o.out = tmp.path() / "m";
  o.seed = 5;
  o.share_experts = true;
  o.dit_only = true;
  make::make_model(o);
  CheckpointDir hi(o.out / "high_noise_model"), lo(o.out / "low_noise_model");
  EXPECT_EQ(lo.config().variant, "tiny-i2v");
  EXPECT_FALSE(fs::exists(o.out / "low_noise_model" / "diffusion_pytorch_model-00001-of-00002.safetensors"));
  EXPECT_EQ(lo.info("blocks.0.self_attn.q.weight").path, hi.info("blocks.0.self_attn.q.weight").path);
  EXPECT_TRUE(at::equal(lo.load("head.head.weight"), hi.load("head.head.weight")));
}

// ---- DiT ----

struct TinyInputs {
  at::Tensor x, t, ctx, ctx_null;
  int64_t seq_len;
};

TinyInputs tiny_inputs(const WanConfig& cfg, int64_t pad = 0) {
  at::manual_seed(11);
  TinyInputs in;
  in.x = at::randn({cfg.out_dim, 3, 8, 10});
  in.t = at::full({1}, 900, at::kLong);
  in.ctx = at::randn({7, cfg.text_dim}) * 0.5;
  in.ctx_null = at::randn({5, cfg.text_dim}) * 0.5;
  in.seq_len = 3 * 4 * 5 + pad;
  return in;
}

TEST(WanDit, StageApiEqualsForwardWithExternalWeights) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  CheckpointDir ck(d);
  WanDit owned = WanDit::load(ck, RunDtype::kFloat32, at::kCPU, true);
  WanDit streamed = WanDit::load(ck, RunDtype::kFloat32, at::kCPU, false);
  EXPECT_FALSE(streamed.has_blocks());
  TinyInputs ti = tiny_inputs(ck.config(), 3);
  at::Tensor ref = owned.forward(ti.x, ti.t, ti.ctx, ti.seq_len);
  DitInputs in = streamed.embed(ti.x, ti.t, ti.ctx, ti.seq_len);
  at::Tensor h = in.tokens;
  for (int64_t i = 0; i < streamed.num_layers(); ++i) {
    DitBlockWeights w = DitBlockWeights::from(ck, i, RunDtype::kFloat32, at::kCPU);
    h = streamed.block(i, h, in, w);
  }
  at::Tensor got = streamed.head(h, in);
  EXPECT_EQ(got.sizes(), ti.x.sizes());
  EXPECT_TRUE(at::equal(got, ref));
  EXPECT_THROW(streamed.forward(ti.x, ti.t, ti.ctx, ti.seq_len), wand::Error);  // no owned blocks
  // CFG interleaved == two separate forwards.
  auto [vc, vu] = owned.forward_cfg(ti.x, ti.t, ti.ctx, ti.ctx_null, ti.seq_len);
  EXPECT_TRUE(at::equal(vc, ref));
  EXPECT_TRUE(at::equal(vu, owned.forward(ti.x, ti.t, ti.ctx_null, ti.seq_len)));
  EXPECT_FALSE(at::equal(vc, vu));
}

TEST(WanDit, ChunkedTokensMatchWholeSequence) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  CheckpointDir ck(d);
  WanDit dit = WanDit::load(ck, RunDtype::kFloat32, at::kCPU);
  TinyInputs ti = tiny_inputs(ck.config());
  at::Tensor whole = dit.forward(ti.x, ti.t, ti.ctx, ti.seq_len);
  dit.set_chunk_tokens(7);
  at::Tensor chunked = dit.forward(ti.x, ti.t, ti.ctx, ti.seq_len);
  EXPECT_LT((whole - chunked).abs().max().item<double>(), 1e-5);
  EXPECT_GT(whole.std().item<double>(), 1e-2);
}

TEST(WanDit, SequencePaddingDoesNotChangeTokens) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m");
  CheckpointDir ck(d);
  WanDit dit = WanDit::load(ck, RunDtype::kFloat32, at::kCPU);
  TinyInputs ti = tiny_inputs(ck.config());
  at::Tensor a = dit.forward(ti.x, ti.t, ti.ctx, ti.seq_len);
  at::Tensor b = dit.forward(ti.x, ti.t, ti.ctx, ti.seq_len + 5);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
  EXPECT_THROW(dit.forward(ti.x, ti.t, ti.ctx, ti.seq_len - 1), wand::Error);
  EXPECT_THROW(dit.forward(ti.x, ti.t, at::randn({600, 64}), ti.seq_len), wand::Error);  // > text_len
  EXPECT_THROW(dit.forward(ti.x.slice(0, 0, 15), ti.t, ti.ctx, ti.seq_len), wand::Error);  // in_dim
}

TEST(WanDit, PerTokenTimestepsUseDistinctRows) {
  TempDir tmp;
  const fs::path d = write_tiny_expert(tmp.path() / "m", "tiny-ti2v");
  CheckpointDir ck(d);
  WanDit dit = WanDit::load(ck, RunDtype::kFloat32, at::kCPU);
  TinyInputs ti = tiny_inputs(ck.config());
  at::Tensor t = at::full({1, ti.seq_len}, 700.0);
  t.slice(1, 0, 20).fill_(0.0);  // latent frame 0 (4 x 5 tokens): t = 0
  DitInputs in = dit.embed(ti.x, t, ti.ctx, ti.seq_len);
  ASSERT_EQ(in.e.size(0), 2);
  ASSERT_TRUE(in.row_of_token.defined());
  // All-equal per-token t == scalar t.
  at::Tensor full = at::full({1, ti.seq_len}, 700.0);
  at::Tensor a = dit.forward(ti.x, full, ti.ctx, ti.seq_len);
  at::Tensor b = dit.forward(ti.x, at::full({1}, 700, at::kLong), ti.ctx, ti.seq_len);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(dit.forward(ti.x, t, ti.ctx, ti.seq_len), a));
}

TEST(WanDit, Bf16ModeCloseToFloat64Reference) {
  const fs::path dir = wand::test::golden_root() / "dit_t2v";
  WAND_REQUIRE_DATA(dir);
  CheckpointDir ck(dir / "high_noise_model");
  auto in = load_safetensors((dir / "inputs.safetensors").string());
  auto ref = load_safetensors((dir / "outputs.safetensors").string());
  const int64_t seq_len = in["seq_len"].item<int64_t>();
  WanDit f32 = WanDit::load(ck, RunDtype::kFloat32, at::kCPU);
  WanDit b16 = WanDit::load(ck, RunDtype::kBFloat16, at::kCPU);
  at::Tensor x = in["x"].to(at::kFloat), ctx = in["context"].to(at::kFloat);
  at::Tensor p32 = f32.forward(x, in["t"], ctx, seq_len);
  at::Tensor p16 = b16.forward(x, in["t"], ctx, seq_len);
  EXPECT_EQ(p16.scalar_type(), at::kFloat);
  const double e32 = wand::test::rel_l2(p32, ref["pred"]);
  const double e16 = wand::test::rel_l2(p16, ref["pred"]);
  std::cout << "[ dit ] rel L2 vs float64: fp32 " << e32 << ", bf16 " << e16 << "\n";
  EXPECT_LT(e32, 1e-5);
  EXPECT_LT(e16, 2e-2);   // bf16 GEMMs: ~1e-2 expected
  EXPECT_GT(e16, e32);    // the bf16 mode really rounds
}

TEST(MakeModel, TinyPresetsLoadAndRun) {
  for (const char* preset : {"tiny-t2v", "tiny-i2v", "tiny-ti2v"}) {
    TempDir tmp;
    make::MakeModelOptions o;
    o.preset = preset;
    o.out = tmp.path() / "m";
    o.seed = 1;
    o.dit_only = true;
    make::make_model(o);
    const bool ti2v = std::string(preset) == "tiny-ti2v";
    std::vector<fs::path> experts = ti2v ? std::vector<fs::path>{o.out}
                                         : std::vector<fs::path>{o.out / "high_noise_model", o.out / "low_noise_model"};
    std::vector<at::Tensor> preds;
    for (const auto& e : experts) {
      ASSERT_TRUE(fs::exists(e / "diffusion_pytorch_model-00001-of-00002.safetensors")) << e;
      ASSERT_TRUE(fs::exists(e / "diffusion_pytorch_model-00002-of-00002.safetensors")) << e;
      CheckpointDir ck(e);
      EXPECT_EQ(ck.config().variant, preset);
      WanDit dit = WanDit::load(ck, RunDtype::kFloat32, at::kCPU);
      const WanConfig& c = ck.config();
      at::manual_seed(3);
      at::Tensor x = at::randn({c.model_type == "i2v" ? 16 : c.in_dim, 2, 4, 6});
      c10::optional<at::Tensor> y;
      if (c.model_type == "i2v") y = at::randn({20, 2, 4, 6});
      at::Tensor v = dit.forward(x, at::full({1}, 500, at::kLong), at::randn({5, c.text_dim}), 2 * 2 * 3, y);
      EXPECT_EQ(v.size(0), c.out_dim);
      EXPECT_TRUE(at::isfinite(v).all().item<bool>());
      EXPECT_GT(v.std().item<double>(), 0.05);
      preds.push_back(v);
    }
    if (preds.size() == 2) EXPECT_FALSE(at::equal(preds[0], preds[1])) << "experts must differ";
  }
}

TEST(MakeModel, SameSeedSameBytesOtherSeedOtherWeights) {
  TempDir tmp;
  WanConfig cfg = WanConfig::from_preset("tiny-t2v", 64);
  make::write_dit_expert(tmp.path() / "a", cfg, at::kBFloat16, 9, 0);
  make::write_dit_expert(tmp.path() / "b", cfg, at::kBFloat16, 9, 0);
  make::write_dit_expert(tmp.path() / "c", cfg, at::kBFloat16, 10, 0);
  CheckpointDir a(tmp.path() / "a"), b(tmp.path() / "b"), c(tmp.path() / "c");
  EXPECT_EQ(a.info("blocks.0.ffn.0.weight").dtype, at::kBFloat16);
  EXPECT_TRUE(at::equal(a.load("blocks.0.ffn.0.weight"), b.load("blocks.0.ffn.0.weight")));
  EXPECT_FALSE(at::equal(a.load("blocks.0.ffn.0.weight"), c.load("blocks.0.ffn.0.weight")));
  // Init statistics: weights ~ N(0, 1/fan_in), norms ~ 1 + N(0, 0.01).
  at::Tensor w = a.load("blocks.0.ffn.0.weight", at::kFloat);
  EXPECT_NEAR(w.std().item<double>(), 1.0 / 8.0, 0.01);
  EXPECT_NEAR(a.load("blocks.0.norm3.weight", at::kFloat).mean().item<double>(), 1.0, 0.05);
}

TEST(MakeModel, RejectsUnknownPresetAndDtype) {
  TempDir tmp;
  make::MakeModelOptions o;
  o.preset = "huge-t2v";
  o.out = tmp.path() / "m";
  EXPECT_THROW(make::make_model(o), wand::Error);
  o.preset = "tiny-t2v";
  o.dtype = at::kDouble;  // the release stores fp32/bf16, the diffusers files fp16/bf16; nothing stores fp64
  o.dit_only = true;
  EXPECT_THROW(make::make_model(o), wand::Error);
}

}  // namespace

namespace {

TEST(MakeModel, ShardPlanMatchesTheRelease) {
  // The release ships 6 shards per fp32 A14B expert and 3 for TI2V-5B (10 GB shards).
  auto sizes_of = [](const std::string& preset, uint64_t esize) {
    WanConfig cfg = WanConfig::from_preset(preset);
    std::vector<uint64_t> v;
    for (auto& [n, s] : cfg.expected_tensors()) {
      uint64_t k = esize;
      for (int64_t d : s) k *= d;
      v.push_back(k);
    }
    return v;
  };
  const uint64_t ten_gb = 10ull * 1000 * 1000 * 1000;
  EXPECT_EQ(make::plan_shards(sizes_of("t2v-A14B", 4), ten_gb).size(), 6u);
  EXPECT_EQ(make::plan_shards(sizes_of("t2v-A14B", 2), ten_gb).size(), 3u);
  EXPECT_EQ(make::plan_shards(sizes_of("ti2v-5B", 4), ten_gb).size(), 3u);
  EXPECT_EQ(WanConfig::from_preset("t2v-A14B").num_params(), 14288491584);
  EXPECT_EQ(WanConfig::from_preset("i2v-A14B").num_params(), 14288901184);
  EXPECT_EQ(WanConfig::from_preset("ti2v-5B").num_params(), 4999787712);
  // Every tensor lands in exactly one shard, in order; an oversized tensor alone.
  auto p = make::plan_shards({5, 5, 20, 3, 3, 3}, 10);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], (std::vector<size_t>{0, 1}));
  EXPECT_EQ(p[1], (std::vector<size_t>{2}));
  EXPECT_EQ(p[2], (std::vector<size_t>{3, 4, 5}));
}

}  // namespace
