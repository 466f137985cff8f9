// LoRAs of the DiT experts (model/lora.h, model/formats/lora_keys.h) on the tiny presets, fp32
// on the CPU: the three key layouts written from the same factors give identical merged
// weights, equal within 1e-6 relative to the merge computed here in double; strength 0 is
// bitwise no LoRA; @high / @low change one expert only; the last job's LoRAs do not leak into
// a job without them; bad files are refused naming the file and the key.
#include "model/lora.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "common/error.h"
#include "model/formats/lora_keys.h"
#include "model/generator.h"
#include "model/safetensors_header.h"
#include "tests/model/lora_files.h"
#include "tests/model/tiny_model.h"

namespace wand::model {
namespace {

namespace fs = std::filesystem;
using testing::TestLayout;

WanConfig tiny_cfg() { return WanConfig::from_preset("tiny-t2v", testing::kTinyTextDim); }

// Random fp32 block weights of block i (DitBlockWeights::from_map: the same preparation as a load).
DitBlockWeights random_block(const WanConfig& cfg, int64_t i, std::uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  std::map<std::string, at::Tensor> m;
  for (const auto& [name, shape] : cfg.block_tensors(i)) m[name] = at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
  return DitBlockWeights::from_map(m, i, RunDtype::kFloat32, at::kCPU);
}

struct Dir {
  fs::path path = testing::make_temp_dir("lora");
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LoraKeys, EveryLayoutMapsToTheReleaseNames) {
  const formats::LoraKeyMap map(tiny_cfg());
  struct Case {
    const char* key;
    formats::LoraLayout layout;
    const char* module;
    formats::LoraPart part;
  };
  const Case cases[] = {
      {"transformer.blocks.1.attn1.to_q.lora_A.weight", formats::LoraLayout::kDiffusers, "blocks.1.self_attn.q", formats::LoraPart::kDown},
      {"transformer.blocks.0.attn2.to_out.0.lora_B.weight", formats::LoraLayout::kDiffusers, "blocks.0.cross_attn.o", formats::LoraPart::kUp},
      {"transformer.blocks.0.ffn.net.0.proj.lora_B.bias", formats::LoraLayout::kDiffusers, "blocks.0.ffn.0", formats::LoraPart::kDiffBias},
      {"transformer.blocks.1.norm2.diff", formats::LoraLayout::kDiffusers, "blocks.1.norm3", formats::LoraPart::kDiff},
      {"diffusion_model.blocks.1.self_attn.q.lora_down.weight", formats::LoraLayout::kComfy, "blocks.1.self_attn.q", formats::LoraPart::kDown},
      {"diffusion_model.blocks.0.ffn.2.alpha", formats::LoraLayout::kComfy, "blocks.0.ffn.2", formats::LoraPart::kAlpha},
      {"diffusion_model.blocks.0.modulation.diff", formats::LoraLayout::kComfy, "blocks.0.modulation", formats::LoraPart::kDiff},
      {"diffusion_model.blocks.0.self_attn.norm_k.diff", formats::LoraLayout::kComfy, "blocks.0.self_attn.norm_k", formats::LoraPart::kDiff},
      {"diffusion_model.blocks.0.cross_attn.k.lora_A.weight", formats::LoraLayout::kComfy, "blocks.0.cross_attn.k", formats::LoraPart::kDown},
      {"blocks.1.ffn.0.lora_up.weight", formats::LoraLayout::kComfy, "blocks.1.ffn.0", formats::LoraPart::kUp},
      {"lora_unet_blocks_1_cross_attn_v.lora_up.weight", formats::LoraLayout::kKohya, "blocks.1.cross_attn.v", formats::LoraPart::kUp},
      {"lora_unet_blocks_0_ffn_0.diff_b", formats::LoraLayout::kKohya, "blocks.0.ffn.0", formats::LoraPart::kDiffBias},
  };
  for (const Case& c : cases) {
    const auto k = map.classify(c.key);
    ASSERT_TRUE(k.has_value()) << c.key;
    EXPECT_TRUE(k->known) << c.key;
    EXPECT_EQ(k->layout, c.layout) << c.key;
    EXPECT_EQ(k->module, c.module) << c.key;
    EXPECT_EQ(static_cast<int>(k->part), static_cast<int>(c.part)) << c.key;
  }
  EXPECT_FALSE(map.classify("blocks.0.self_attn.q.weight").has_value());  // a checkpoint key, not a LoRA key
  const auto far = map.classify("diffusion_model.blocks.7.self_attn.q.lora_down.weight");
  ASSERT_TRUE(far.has_value());
  EXPECT_FALSE(far->known);  // the tiny model has 2 blocks
  EXPECT_EQ(map.weight_key("blocks.0.modulation"), "blocks.0.modulation");
  EXPECT_EQ(map.weight_key("blocks.0.ffn.2"), "blocks.0.ffn.2.weight");
  EXPECT_EQ(map.bias_key("blocks.0.norm3"), "blocks.0.norm3.bias");
  EXPECT_EQ(map.bias_key("blocks.0.self_attn.norm_q"), "");
}

TEST(LoraMerge, ThreeLayoutsGiveIdenticalWeightsEqualToTheIndependentMerge) {
  const WanConfig cfg = tiny_cfg();
  Dir d;
  const testing::TestLora l = testing::random_lora(cfg, 3);
  const double strength = 0.7;
  std::vector<std::vector<DitBlockWeights>> merged;  // [layout][block]
  for (TestLayout layout : {TestLayout::kDiffusers, TestLayout::kComfy, TestLayout::kKohya}) {
    const std::string p = (d.path / ("l" + std::to_string(static_cast<int>(layout)) + ".safetensors")).string();
    testing::write_lora(l, layout, p);
    auto f = LoraFile::read(p, cfg);
    EXPECT_EQ(static_cast<int>(f->index().layout), static_cast<int>(layout));
    EXPECT_EQ(f->index().max_rank, 4);
    auto lora = DitLora::build({{f, strength}}, at::kCPU, RunDtype::kFloat32);
    std::vector<DitBlockWeights> per_block;
    for (int64_t b = 0; b < cfg.num_layers; ++b) per_block.push_back(lora->apply(b, random_block(cfg, b, 10 + b)));
    merged.push_back(per_block);
  }
  for (int64_t b = 0; b < cfg.num_layers; ++b) {
    const DitBlockWeights w = random_block(cfg, b, 10 + b);
    const std::vector<std::string> names = DitBlockWeights::tensor_names(b);
    const auto base = w.fields();
    int changed = 0;
    for (std::size_t f = 0; f < names.size(); ++f) {
      const at::Tensor& got = *merged[1][static_cast<std::size_t>(b)].fields()[f];
      EXPECT_TRUE(at::equal(*merged[0][static_cast<std::size_t>(b)].fields()[f], got)) << "diffusers vs comfyui " << names[f];
      EXPECT_TRUE(at::equal(*merged[2][static_cast<std::size_t>(b)].fields()[f], got)) << "kohya vs comfyui " << names[f];
      const at::Tensor want = l.merged(*base[f], names[f], strength);
      const double scale = want.abs().max().item<double>();
      const double err = (got.to(at::kDouble) - want).abs().max().item<double>();
      EXPECT_LE(err, 1e-6 * scale) << names[f];
      EXPECT_EQ(got.scalar_type(), base[f]->scalar_type()) << names[f];
      if (!at::equal(got, *base[f])) ++changed;
    }
    // q weight + q bias, cross o, ffn.0, ffn.2, norm3.weight, modulation.
    EXPECT_EQ(changed, 7) << "block " << b;
  }
}

TEST(LoraMerge, Bf16FactorsMergeInFp32AndRoundOnceToTheRunDtype) {
  const WanConfig cfg = tiny_cfg();
  Dir d;
  const testing::TestLora l = testing::random_lora(cfg, 4);
  const std::string p = (d.path / "bf16.safetensors").string();
  testing::write_lora(l, TestLayout::kComfy, p, at::kBFloat16);
  auto lora = DitLora::build({{LoraFile::read(p, cfg), 1.0}}, at::kCPU, RunDtype::kBFloat16);
  at::Generator g = at::detail::createCPUGenerator(5);
  std::map<std::string, at::Tensor> m;
  for (const auto& [name, shape] : cfg.block_tensors(0)) m[name] = at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
  const DitBlockWeights w = DitBlockWeights::from_map(m, 0, RunDtype::kBFloat16, at::kCPU);
  const DitBlockWeights out = lora->apply(0, w);
  // ffn.0: W_bf16 + 8/4 x up @ down (bf16 factors, fp32 arithmetic), rounded once to bf16.
  testing::TestLora l16 = l;
  for (auto& pr : l16.pairs) {
    pr.up = pr.up.to(at::kBFloat16).to(at::kFloat);
    pr.down = pr.down.to(at::kBFloat16).to(at::kFloat);
  }
  const at::Tensor want = l16.merged(w.ffn0_w, "blocks.0.ffn.0.weight", 1.0).to(at::kFloat).to(at::kBFloat16);
  EXPECT_EQ(out.ffn0_w.scalar_type(), at::kBFloat16);
  // Within one bf16 rounding of the double merge (fp32 accumulation may round the other way).
  const double ulp = want.to(at::kFloat).abs().max().item<double>() / 128.0;
  EXPECT_LE((out.ffn0_w.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>(), ulp);
  // modulation is held in fp32 with its value rounded to bf16, as DitBlockWeights keeps it.
  EXPECT_EQ(out.modulation.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(out.modulation, out.modulation.to(at::kBFloat16).to(at::kFloat)));
}

TEST(LoraFileChecks, BadFilesNameTheFileAndTheKey) {
  const WanConfig cfg = tiny_cfg();
  Dir d;
  const testing::TestLora l = testing::random_lora(cfg, 6);
  auto write = [&](const std::string& name, const std::map<std::string, at::Tensor>& t) {
    const std::string p = (d.path / name).string();
    save_safetensors(p, t);
    return p;
  };
  const auto good = testing::lora_tensors(l, TestLayout::kComfy);

  {  // truncated: the header names a byte range past the end
    const std::string p = write("truncated.safetensors", good);
    fs::resize_file(p, fs::file_size(p) - 64);
    const std::string e = error_of([&] { LoraFile::read(p, cfg); });
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_NE(e.find("diffusion_model.blocks."), std::string::npos) << e;
  }
  {  // a down matrix of the wrong width
    auto t = good;
    t["diffusion_model.blocks.1.ffn.2.lora_down.weight"] = at::zeros({2, cfg.dim});
    const std::string p = write("shape.safetensors", t);
    const std::string e = error_of([&] { LoraFile::read(p, cfg); });
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_NE(e.find("diffusion_model.blocks.1.ffn.2.lora_down.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("do not fit"), std::string::npos) << e;
  }
  {  // a LoRA for a deeper model (another family): a block the model does not have
    auto t = good;
    t["diffusion_model.blocks.30.self_attn.q.lora_down.weight"] = at::zeros({4, cfg.dim});
    const std::string p = write("deep.safetensors", t);
    const std::string e = error_of([&] { LoraFile::read(p, cfg); });
    EXPECT_NE(e.find("diffusion_model.blocks.30.self_attn.q.lora_down.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("does not have"), std::string::npos) << e;
  }
  {  // no LoRA key at all (an unknown layout)
    const std::string p = write("unknown.safetensors", {{"unet.down.0.weight", at::zeros({4, 4})}});
    const std::string e = error_of([&] { LoraFile::read(p, cfg); });
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_NE(e.find("unet.down.0.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("not a LoRA key"), std::string::npos) << e;
  }
  {  // an up without its down
    auto t = good;
    t.erase("diffusion_model.blocks.0.ffn.0.lora_down.weight");
    const std::string p = write("half.safetensors", t);
    const std::string e = error_of([&] { LoraFile::read(p, cfg); });
    EXPECT_NE(e.find("diffusion_model.blocks.0.ffn.0.lora_up.weight"), std::string::npos) << e;
  }
  {  // a delta outside the blocks
    auto t = good;
    t["diffusion_model.head.head.diff_b"] = at::zeros({64});
    const std::string p = write("head.safetensors", t);
    const std::string e = error_of([&] { LoraFile::read(p, cfg); });
    EXPECT_NE(e.find("diffusion_model.head.head.diff_b"), std::string::npos) << e;
    EXPECT_NE(e.find("outside the DiT blocks"), std::string::npos) << e;
  }
  EXPECT_EQ(error_of([&] { LoraFile::read((d.path / "absent.safetensors").string(), cfg); }).find("(no error)"),
            std::string::npos);
}

// --- generator (resident experts) -----------------------------------------------------------

GeneratorOptions cpu_options() {
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.run_dtype = RunDtype::kFloat32;
  o.text_encoder = testing::fake_text_encoder(testing::kTinyTextDim);
  return o;
}

GenRequest request() {
  GenRequest r;
  r.task = "t2v";
  r.prompt = "a paper boat on a river";
  r.width = 48;
  r.height = 32;
  r.frames = 5;
  r.steps = 6;
  r.seed = 42;
  return r;
}

struct TinyDir {
  Dir d;
  fs::path dir() const { return d.path / "tiny-t2v"; }
  std::string lora;
  TinyDir() {
    testing::write_tiny_wan_dir(dir(), "tiny-t2v", 5);
    lora = (d.path / "style.safetensors").string();
    testing::write_lora(testing::random_lora(tiny_cfg(), 8, 0.3), TestLayout::kComfy, lora);
  }
};

GenRequest with_lora(GenRequest r, const std::string& file, double strength, const std::string& expert) {
  r.loras.push_back(LoraRef{"style", strength, expert});
  r.lora_files.push_back(file);
  return r;
}

// Every step's latent of a job.
std::vector<at::Tensor> run_job(WanGenerator& gen, const GenRequest& r) {
  GenState st = gen.prepare(r);
  std::vector<at::Tensor> out;
  while (st.completed_steps() < st.total_steps()) {
    gen.step(st);
    out.push_back(st.latent.clone());
  }
  return out;
}

TEST(LoraJob, StrengthZeroIsBitwiseTheJobWithoutLoraAndOneChangesIt) {
  TinyDir m;
  WanGenerator gen(m.dir(), cpu_options());
  const auto none = run_job(gen, request());
  const auto zero = run_job(gen, with_lora(request(), m.lora, 0.0, "both"));
  const auto one = run_job(gen, with_lora(request(), m.lora, 1.0, "both"));
  ASSERT_EQ(none.size(), zero.size());
  for (std::size_t k = 0; k < none.size(); ++k) EXPECT_TRUE(at::equal(none[k], zero[k])) << "step " << k;
  EXPECT_FALSE(at::equal(none.back(), one.back()));
}

TEST(LoraJob, HighAndLowChangeOnlyTheirExpert) {
  TinyDir m;
  WanGenerator gen(m.dir(), cpu_options());
  GenState probe = gen.prepare(request());
  const std::vector<int> schedule = gen.expert_of_step(probe);
  ASSERT_EQ(schedule.front(), 0);
  ASSERT_EQ(schedule.back(), 1) << "the job must cross the expert switch";
  std::size_t first_low = 0;
  while (schedule[first_low] == 0) ++first_low;

  const auto none = run_job(gen, request());
  const auto high = run_job(gen, with_lora(request(), m.lora, 1.0, "high"));
  const auto low = run_job(gen, with_lora(request(), m.lora, 1.0, "low"));
  // @low: the high-noise steps are the plain job's, bit for bit; then it departs.
  for (std::size_t k = 0; k < first_low; ++k) EXPECT_TRUE(at::equal(low[k], none[k])) << "step " << k;
  EXPECT_FALSE(at::equal(low[first_low], none[first_low]));
  // @high: departs at once.
  EXPECT_FALSE(at::equal(high[0], none[0]));

  GenState h = gen.prepare(with_lora(request(), m.lora, 1.0, "high"));
  ASSERT_EQ(h.loras.size(), 2u);
  EXPECT_TRUE(h.loras[0] != nullptr);
  EXPECT_TRUE(h.loras[1] == nullptr);
  GenState l = gen.prepare(with_lora(request(), m.lora, 1.0, "low"));
  EXPECT_TRUE(l.loras[0] == nullptr);
  EXPECT_TRUE(l.loras[1] != nullptr);
}

TEST(LoraJob, AJobWithoutLoraAfterOneWithItIsThePlainJob) {
  TinyDir m;
  WanGenerator fresh(m.dir(), cpu_options());
  const auto plain = run_job(fresh, request());
  WanGenerator gen(m.dir(), cpu_options());
  run_job(gen, with_lora(request(), m.lora, 1.0, "both"));
  const auto after = run_job(gen, request());
  for (std::size_t k = 0; k < plain.size(); ++k) EXPECT_TRUE(at::equal(plain[k], after[k])) << "step " << k;
}

TEST(LoraJob, RequestChecks) {
  TinyDir m;
  WanGenerator gen(m.dir(), cpu_options());
  GenRequest r = request();
  r.loras.push_back(LoraRef{"style", 1.0, "both"});  // no file resolved
  EXPECT_NE(error_of([&] { gen.prepare(r); }).find("files"), std::string::npos);
  GenRequest bad = with_lora(request(), m.lora, 1.0, "middle");
  EXPECT_NE(error_of([&] { gen.validate(bad); }).find("middle"), std::string::npos);
  GenRequest missing = with_lora(request(), (m.d.path / "gone.safetensors").string(), 1.0, "both");
  const std::string e = error_of([&] { gen.prepare(missing); });
  EXPECT_NE(e.find("gone.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("style"), std::string::npos) << e;
}

TEST(LoraRefs, ParseAndEffectiveSet) {
  LoraRef a = parse_lora_ref("distill-hi:0.8@high", "--lora");
  EXPECT_EQ(a.name, "distill-hi");
  EXPECT_DOUBLE_EQ(a.strength, 0.8);
  EXPECT_EQ(a.expert, "high");
  LoraRef b = parse_lora_ref("style", "--lora");
  EXPECT_EQ(b.strength, 1.0);
  EXPECT_EQ(b.expert, "both");
  EXPECT_EQ(parse_lora_ref("s.v2:-0.5", "x").strength, -0.5);
  EXPECT_EQ(parse_lora_ref("s@low", "x").expert, "low");
  for (const char* bad : {"x:abc", "x:", "/etc/passwd", "a/b", "x@mid", "x:1e999", ":1", ".hidden", "x:nan"}) {
    EXPECT_THROW(parse_lora_ref(bad, "--lora"), Error) << bad;
  }
  EXPECT_NE(error_of([] { parse_lora_ref("style:fast", "--lora"); }).find("not a number"), std::string::npos);
  // JSON round trip through the request.
  JobRequest r;
  r.model = "m";
  r.loras = {a, b};
  const JobRequest back = job_request_from_json(job_request_to_json(r), "job");
  EXPECT_EQ(back.loras, r.loras);
  EXPECT_FALSE(job_request_to_json(JobRequest{}).contains("loras"));
  // Defaults: a request entry replaces the defaults of its name; strength 0 drops it.
  const std::vector<LoraRef> defaults = {{"distill-hi", 1.0, "high"}, {"distill-lo", 1.0, "low"}};
  const auto eff = effective_loras(defaults, {{"distill-lo", 0.0, "low"}, {"style", 0.5, "both"}});
  ASSERT_EQ(eff.size(), 2u);
  EXPECT_EQ(eff[0].name, "distill-hi");
  EXPECT_EQ(eff[1].name, "style");
  EXPECT_EQ(effective_loras(defaults, {}).size(), 2u);
}

}  // namespace
}  // namespace wand::model
