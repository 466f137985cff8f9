// Checkpoint layouts (model/formats/): the diffusers DiT key map and config against
// diffusers' own naming (scripts/convert_wan_to_diffusers.py, WanTransformer3DModel), the
// layout detector, CheckpointDir over diffusers shards (byte ranges kept for direct
// streaming), tiny t2v / ti2v pipelines in the diffusers layout giving the same latents and
// video, bit for bit, as the release layout with the same weights, and the errors of bad
// input (a missing part, a missing / extra / misshapen key, fp8, another model family).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/formats/diffusers_keys.h"
#include "model/formats/diffusers_vae_keys.h"
#include "model/formats/model_layout.h"
#include "model/formats/part_sources.h"
#include "model/formats/single_file.h"
#include "model/formats/renamed_source.h"
#include "model/formats/transformers_umt5_keys.h"
#include "model/make_model/make_model.h"
#include "model/generator.h"
#include "model/generator_text.h"
#include "model/pth.h"
#include "model/t5_encoder.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "model/vae.h"
#include "model/vae_config.h"
#include "tests/model/tiny_model.h"

namespace wand::model {
namespace {

namespace fs = std::filesystem;
using formats::diffusers_dit_key;
using nlohmann::json;
using testing::fake_text_encoder;
using testing::kTinyTextDim;
using testing::make_temp_dir;

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << p;
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag) : p_(make_temp_dir(tag)) {}
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(p_, ec);
  }
  const fs::path& path() const { return p_; }

 private:
  fs::path p_;
};

// ------------------------------------------------------------------- key map

// The names diffusers' conversion script gives (TRANSFORMER_KEYS_RENAME_DICT applied to the
// release keys), written out by hand from the script and WanTransformer3DModel's modules.
TEST(DiffusersKeys, NamesAreDiffusersOwn) {
  EXPECT_EQ(diffusers_dit_key("patch_embedding.weight"), "patch_embedding.weight");
  EXPECT_EQ(diffusers_dit_key("text_embedding.0.weight"), "condition_embedder.text_embedder.linear_1.weight");
  EXPECT_EQ(diffusers_dit_key("text_embedding.2.bias"), "condition_embedder.text_embedder.linear_2.bias");
  EXPECT_EQ(diffusers_dit_key("time_embedding.0.bias"), "condition_embedder.time_embedder.linear_1.bias");
  EXPECT_EQ(diffusers_dit_key("time_embedding.2.weight"), "condition_embedder.time_embedder.linear_2.weight");
  EXPECT_EQ(diffusers_dit_key("time_projection.1.weight"), "condition_embedder.time_proj.weight");
  EXPECT_EQ(diffusers_dit_key("head.head.weight"), "proj_out.weight");
  EXPECT_EQ(diffusers_dit_key("head.modulation"), "scale_shift_table");
  EXPECT_EQ(diffusers_dit_key("blocks.0.self_attn.q.weight"), "blocks.0.attn1.to_q.weight");
  EXPECT_EQ(diffusers_dit_key("blocks.12.self_attn.o.bias"), "blocks.12.attn1.to_out.0.bias");
  EXPECT_EQ(diffusers_dit_key("blocks.3.self_attn.norm_k.weight"), "blocks.3.attn1.norm_k.weight");
  EXPECT_EQ(diffusers_dit_key("blocks.39.cross_attn.v.weight"), "blocks.39.attn2.to_v.weight");
  EXPECT_EQ(diffusers_dit_key("blocks.1.cross_attn.norm_q.weight"), "blocks.1.attn2.norm_q.weight");
  EXPECT_EQ(diffusers_dit_key("blocks.1.norm3.weight"), "blocks.1.norm2.weight");  // the norm2 / norm3 swap
  EXPECT_EQ(diffusers_dit_key("blocks.1.norm3.bias"), "blocks.1.norm2.bias");
  EXPECT_EQ(diffusers_dit_key("blocks.2.ffn.0.weight"), "blocks.2.ffn.net.0.proj.weight");
  EXPECT_EQ(diffusers_dit_key("blocks.2.ffn.2.bias"), "blocks.2.ffn.net.2.bias");
  EXPECT_EQ(diffusers_dit_key("blocks.5.modulation"), "blocks.5.scale_shift_table");
  EXPECT_THROW(diffusers_dit_key("blocks.5.img_emb.proj.0.weight"), Error);
}

TEST(DiffusersKeys, MapIsOneToOneOverTheReleaseKeySet) {
  for (const char* preset : {"t2v-A14B", "i2v-A14B", "ti2v-5B", "tiny-t2v"}) {
    const WanConfig cfg = WanConfig::from_preset(preset);
    const auto m = formats::diffusers_dit_key_map(cfg);
    const auto expected = cfg.expected_tensors();
    ASSERT_EQ(m.size(), expected.size()) << preset;
    std::set<std::string> release;
    for (const auto& [d, r] : m) {
      release.insert(r);
      EXPECT_EQ(diffusers_dit_key(r), d);
    }
    EXPECT_EQ(release.size(), expected.size()) << preset;
  }
}

TEST(DiffusersKeys, ConfigRoundTripAndRefusals) {
  for (const char* preset : {"t2v-A14B", "i2v-A14B", "ti2v-5B", "tiny-ti2v"}) {
    const WanConfig want = WanConfig::from_preset(preset);
    const json j = formats::diffusers_dit_config_json(want);
    EXPECT_TRUE(formats::is_diffusers_dit_config(j));
    const WanConfig got = formats::wan_config_from_any(j, "transformer/config.json");
    EXPECT_EQ(got.variant, want.variant) << preset;
    EXPECT_EQ(got.model_type, want.model_type);
    EXPECT_EQ(got.dim, want.dim);
    EXPECT_EQ(got.ffn_dim, want.ffn_dim);
    EXPECT_EQ(got.num_heads, want.num_heads);
    EXPECT_EQ(got.num_layers, want.num_layers);
    EXPECT_EQ(got.in_dim, want.in_dim);
    EXPECT_EQ(got.out_dim, want.out_dim);
    EXPECT_EQ(got.text_dim, want.text_dim);
    EXPECT_EQ(got.text_len, 512);
    EXPECT_EQ(got.expected_tensors(), want.expected_tensors());
  }
  // The Wan2.2-T2V-A14B-Diffusers transformer/config.json as published (fields diffusers writes).
  const json real = json::parse(R"({"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.35.0.dev0",
    "added_kv_proj_dim": null, "attention_head_dim": 128, "cross_attn_norm": true, "eps": 1e-06,
    "ffn_dim": 13824, "freq_dim": 256, "image_dim": null, "in_channels": 16, "num_attention_heads": 40,
    "num_layers": 40, "out_channels": 16, "patch_size": [1, 2, 2], "pos_embed_seq_len": null,
    "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 1024, "text_dim": 4096})");
  EXPECT_EQ(formats::wan_config_from_diffusers(real, "c").variant, "t2v-A14B");
  auto refused = [&](const char* field, json value, const char* part) {
    json j = real;
    j[field] = value;
    const std::string w = what_of([&] { formats::wan_config_from_diffusers(j, "x/transformer/config.json"); });
    EXPECT_TRUE(has(w, "x/transformer/config.json") && has(w, field) && has(w, part)) << w;
  };
  refused("image_dim", 1280, "image embedder");           // Wan2.1 i2v (CLIP)
  refused("added_kv_proj_dim", 5120, "added K/V");        // Wan2.1 i2v / Animate
  refused("in_channels", 20, "not a Wan2.2 DiT");
  refused("patch_size", json::array({1, 4, 4}), "[1, 2, 2]");
  refused("num_layers", 1000000, "outside");
  json other = real;
  other["_class_name"] = "FluxTransformer2DModel";
  EXPECT_FALSE(formats::is_diffusers_dit_config(other));
  EXPECT_TRUE(has(what_of([&] { formats::wan_config_from_any(other, "f/config.json"); }), "FluxTransformer2DModel"));
}

// ------------------------------------------------------------------- layouts

make::MakeModelOptions tiny(const std::string& preset, const fs::path& out, const std::string& layout) {
  make::MakeModelOptions o;
  o.preset = preset;
  o.out = out;
  o.seed = 7;
  o.layout = layout;
  return o;
}

TEST(ModelLayout, DetectsBothLayouts) {
  TempDir t("formats-layout");
  make::make_model(tiny("tiny-t2v", t.path() / "rel", "release"));
  make::make_model(tiny("tiny-t2v", t.path() / "dif", "diffusers"));
  make::make_model(tiny("tiny-ti2v", t.path() / "dif5", "diffusers"));
  for (const char* d : {"rel", "dif", "dif5"}) EXPECT_TRUE(formats::probe_model_layout(t.path() / d)) << d;
  EXPECT_FALSE(formats::probe_model_layout(t.path()));

  const auto rel = formats::detect_model_layout(t.path() / "rel");
  EXPECT_EQ(rel.kind, formats::LayoutKind::kRelease);
  ASSERT_EQ(rel.experts.size(), 2u);
  EXPECT_EQ(rel.experts[0].dir, t.path() / "rel" / "high_noise_model");
  EXPECT_FALSE(rel.boundary_ratio);

  const auto dif = formats::detect_model_layout(t.path() / "dif");
  EXPECT_EQ(dif.kind, formats::LayoutKind::kDiffusers);
  ASSERT_EQ(dif.experts.size(), 2u);
  EXPECT_EQ(dif.experts[0].dir, t.path() / "dif" / "transformer");   // high noise
  EXPECT_EQ(dif.experts[1].dir, t.path() / "dif" / "transformer_2");  // low noise
  ASSERT_TRUE(dif.boundary_ratio);
  EXPECT_DOUBLE_EQ(*dif.boundary_ratio, 0.875);
  const json idx = read_json(t.path() / "dif" / "model_index.json");
  EXPECT_EQ(idx["_class_name"], "WanPipeline");
  EXPECT_EQ(idx["transformer_2"], json::array({"diffusers", "WanTransformer3DModel"}));

  const auto dif5 = formats::detect_model_layout(t.path() / "dif5");
  ASSERT_EQ(dif5.experts.size(), 1u);
  EXPECT_EQ(dif5.experts[0].dir, t.path() / "dif5" / "transformer");
  EXPECT_FALSE(dif5.boundary_ratio);
  EXPECT_EQ(read_json(t.path() / "dif5" / "model_index.json")["transformer_2"], json::array({nullptr, nullptr}));

  // The planner's and the generator's view of the config agree (boundary from model_index.json).
  const WanConfig c = WanGenerator::read_dir_config(t.path() / "dif");
  EXPECT_EQ(c.variant, "tiny-t2v");
  EXPECT_DOUBLE_EQ(c.boundary, 0.875);
}

// The diffusers shards hold diffusers' key names and config; CheckpointDir serves the
// release names with the shard's own path and byte offset, and the same values.
TEST(ModelLayout, CheckpointDirRenamesAndKeepsByteRanges) {
  TempDir t("formats-ckpt");
  make::make_model(tiny("tiny-t2v", t.path() / "rel", "release"));
  make::make_model(tiny("tiny-t2v", t.path() / "dif", "diffusers"));
  const json cfg = read_json(t.path() / "dif" / "transformer" / "config.json");
  EXPECT_EQ(cfg["_class_name"], "WanTransformer3DModel");
  EXPECT_EQ(cfg["num_attention_heads"], 2);
  const json index = read_json(t.path() / "dif" / "transformer" / CheckpointDir::kIndexName);
  EXPECT_TRUE(index["weight_map"].contains("blocks.1.attn2.to_out.0.weight"));
  EXPECT_TRUE(index["weight_map"].contains("condition_embedder.time_proj.bias"));
  EXPECT_FALSE(index["weight_map"].contains("blocks.1.cross_attn.o.weight"));

  const CheckpointDir r(t.path() / "rel" / "high_noise_model");
  const CheckpointDir d(t.path() / "dif" / "transformer");
  EXPECT_STREQ(r.layout(), "release");
  EXPECT_STREQ(d.layout(), "diffusers");
  EXPECT_EQ(r.names(), d.names());
  for (const std::string& n : d.names()) {
    const TensorInfo& ti = d.info(n);
    EXPECT_EQ(ti.name, n);
    EXPECT_EQ(ti.shape, r.info(n).shape) << n;
    // The byte range is the shard's own: read it raw and compare with the release tensor.
    const SafetensorsFile shard(ti.path);
    ASSERT_TRUE(shard.contains(diffusers_dit_key(n))) << n;
    EXPECT_EQ(shard.info(diffusers_dit_key(n)).offset, ti.offset) << n;
    EXPECT_TRUE(at::equal(d.load(n), r.load(n))) << n;
  }
}

// real_text: the model's own umT5 and tokenizer (the release files, or text_encoder/ and
// tokenizer/ of a diffusers folder), else a fake encoder.
at::Tensor latents_of(const fs::path& dir, const GenRequest& req, at::Tensor* video, bool real_text = false) {
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  if (!real_text) o.text_encoder = fake_text_encoder(kTinyTextDim);
  WanGenerator gen(dir, o);
  GenState st = gen.prepare(req);
  while (st.completed_steps() < st.total_steps()) gen.step(st);
  *video = gen.decode(st);
  return st.latent;
}

GenRequest request(const std::string& task, int w, int h, int steps) {
  GenRequest r;
  r.task = task;
  r.prompt = "a lighthouse at dusk";
  r.negative = "blurry";
  r.width = w;
  r.height = h;
  r.frames = 5;
  r.steps = steps;
  r.seed = 11;
  return r;
}

// Item 1 of issue 17: the same weights in the diffusers layout give the same latents (both
// experts used: the expert switch follows boundary_ratio) and video as the release layout.
TEST(ModelLayout, DiffusersTinyT2vIsBitwiseTheRelease) {
  TempDir t("formats-t2v");
  make::make_model(tiny("tiny-t2v", t.path() / "rel", "release"));
  make::make_model(tiny("tiny-t2v", t.path() / "dif", "diffusers"));
  GenRequest req = request("t2v", 64, 48, 6);
  {
    GeneratorOptions o;
    o.device = at::Device(at::kCPU);
    o.text_encoder = fake_text_encoder(kTinyTextDim);
    WanGenerator gen(t.path() / "dif", o);
    EXPECT_TRUE(gen.two_experts());
    EXPECT_EQ(gen.expert_dir(true), t.path() / "dif" / "transformer");
    EXPECT_EQ(gen.expert_dir(false), t.path() / "dif" / "transformer_2");
    const std::vector<int> e = gen.expert_of_step(gen.prepare(req));
    EXPECT_EQ(e.front(), 0);  // high noise first,
    EXPECT_EQ(e.back(), 1);   // then low noise
  }
  at::Tensor vr, vd;
  const at::Tensor lr = latents_of(t.path() / "rel", req, &vr);
  const at::Tensor ld = latents_of(t.path() / "dif", req, &vd);
  EXPECT_TRUE(at::equal(lr, ld)) << "max diff " << (lr - ld).abs().max().item<double>();
  EXPECT_TRUE(at::equal(vr, vd));
  EXPECT_GT(lr.abs().max().item<double>(), 0.0);
}

// Every part from the diffusers folder (transformer/, transformer_2/, text_encoder/,
// tokenizer/, vae/): the real umT5 on both sides, the same latents and video bit for bit.
TEST(ModelLayout, DiffusersTinyT2vAllPartsIsBitwiseTheRelease) {
  TempDir t("formats-t2v-all");
  make::make_model(tiny("tiny-t2v", t.path() / "rel", "release"));
  make::make_model(tiny("tiny-t2v", t.path() / "dif", "diffusers"));
  for (const char* f : {"models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth", "google"}) {
    ASSERT_FALSE(fs::exists(t.path() / "dif" / f)) << f;  // nothing of the release layout
  }
  const auto layout = formats::detect_model_layout(t.path() / "dif");
  EXPECT_EQ(layout.tokenizer_dir(), t.path() / "dif" / "tokenizer");
  EXPECT_EQ(layout.text_encoder().naming, formats::PartNaming::kTransformers);
  EXPECT_EQ(layout.vae("t2v").naming, formats::PartNaming::kDiffusers);
  GenRequest req = request("t2v", 64, 48, 4);
  at::Tensor vr, vd;
  const at::Tensor lr = latents_of(t.path() / "rel", req, &vr, /*real_text=*/true);
  const at::Tensor ld = latents_of(t.path() / "dif", req, &vd, /*real_text=*/true);
  EXPECT_TRUE(at::equal(lr, ld)) << "max diff " << (lr - ld).abs().max().item<double>();
  EXPECT_TRUE(at::equal(vr, vd));
  // The fake encoder gives other latents: the real umT5 was used.
  at::Tensor vf;
  EXPECT_FALSE(at::equal(latents_of(t.path() / "rel", req, &vf), lr));
}

TEST(ModelLayout, DiffusersTinyTi2vIsBitwiseTheRelease) {
  TempDir t("formats-ti2v");
  make::make_model(tiny("tiny-ti2v", t.path() / "rel", "release"));
  make::make_model(tiny("tiny-ti2v", t.path() / "dif", "diffusers"));
  GenRequest req = request("t2v", 64, 64, 3);
  at::Tensor vr, vd;
  const at::Tensor lr = latents_of(t.path() / "rel", req, &vr, /*real_text=*/true);
  const at::Tensor ld = latents_of(t.path() / "dif", req, &vd, /*real_text=*/true);
  EXPECT_TRUE(at::equal(lr, ld)) << "max diff " << (lr - ld).abs().max().item<double>();
  EXPECT_TRUE(at::equal(vr, vd));
}

// ------------------------------------------------------------------- VAE keys

// The names of diffusers' convert_vae / convert_vae_22 (scripts/convert_wan_to_diffusers.py)
// and AutoencoderKLWan's module tree, written out by hand.
TEST(DiffusersVaeKeys, NamesAreDiffusersOwn) {
  using formats::diffusers_vae_key;
  // Wan2.1 VAE (flat lists).
  EXPECT_EQ(diffusers_vae_key("conv1.bias", false), "quant_conv.bias");
  EXPECT_EQ(diffusers_vae_key("conv2.weight", false), "post_quant_conv.weight");
  EXPECT_EQ(diffusers_vae_key("encoder.conv1.weight", false), "encoder.conv_in.weight");
  EXPECT_EQ(diffusers_vae_key("decoder.conv1.bias", false), "decoder.conv_in.bias");
  EXPECT_EQ(diffusers_vae_key("encoder.head.0.gamma", false), "encoder.norm_out.gamma");
  EXPECT_EQ(diffusers_vae_key("decoder.head.2.weight", false), "decoder.conv_out.weight");
  EXPECT_EQ(diffusers_vae_key("encoder.middle.0.residual.0.gamma", false), "encoder.mid_block.resnets.0.norm1.gamma");
  EXPECT_EQ(diffusers_vae_key("decoder.middle.2.residual.6.weight", false), "decoder.mid_block.resnets.1.conv2.weight");
  EXPECT_EQ(diffusers_vae_key("decoder.middle.1.to_qkv.bias", false), "decoder.mid_block.attentions.0.to_qkv.bias");
  EXPECT_EQ(diffusers_vae_key("encoder.middle.1.norm.gamma", false), "encoder.mid_block.attentions.0.norm.gamma");
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.3.shortcut.weight", false), "encoder.down_blocks.3.conv_shortcut.weight");
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.4.residual.3.gamma", false), "encoder.down_blocks.4.norm2.gamma");
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.2.resample.1.weight", false), "encoder.down_blocks.2.resample.1.weight");
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.5.time_conv.bias", false), "encoder.down_blocks.5.time_conv.bias");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.4.shortcut.bias", false),
            "decoder.up_blocks.1.resnets.0.conv_shortcut.bias");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.9.residual.2.weight", false), "decoder.up_blocks.2.resnets.1.conv1.weight");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.14.residual.0.gamma", false), "decoder.up_blocks.3.resnets.2.norm1.gamma");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.7.time_conv.weight", false),
            "decoder.up_blocks.1.upsamplers.0.time_conv.weight");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.11.resample.1.bias", false),
            "decoder.up_blocks.2.upsamplers.0.resample.1.bias");
  // Wan2.2 VAE (nested blocks).
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.1.downsamples.0.residual.2.weight", true),
            "encoder.down_blocks.1.resnets.0.conv1.weight");
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.1.downsamples.0.shortcut.weight", true),
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight");
  EXPECT_EQ(diffusers_vae_key("encoder.downsamples.1.downsamples.2.time_conv.bias", true),
            "encoder.down_blocks.1.downsampler.time_conv.bias");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.0.upsamples.3.resample.1.weight", true),
            "decoder.up_blocks.0.upsampler.resample.1.weight");
  EXPECT_EQ(diffusers_vae_key("decoder.upsamples.2.upsamples.1.residual.3.gamma", true),
            "decoder.up_blocks.2.resnets.1.norm2.gamma");
  EXPECT_FALSE(diffusers_vae_key("decoder.middle.1.foo.weight", false));
  EXPECT_FALSE(diffusers_vae_key("decoder.upsamples.4.residual.9.weight", false));
  EXPECT_FALSE(diffusers_vae_key("model.diffusion_model.x", false));
}

TEST(DiffusersVaeKeys, MapIsOneToOneOverBothVaes) {
  for (const VaeConfig& cfg : {VaeConfig::wan21(), VaeConfig::wan22(), VaeConfig::wan21(8), VaeConfig::wan22(4, 6)}) {
    const bool v22 = cfg.version == VaeVersion::kWan22;
    std::set<std::string> names;
    for (const VaeTensorSpec& s : vae_tensor_specs(cfg)) {
      const auto d = formats::diffusers_vae_key(s.name, v22);
      ASSERT_TRUE(d) << s.name;
      EXPECT_TRUE(names.insert(*d).second) << *d;
    }
    EXPECT_EQ(names.size(), vae_tensor_specs(cfg).size()) << cfg.name();
  }
}

// vae/ in the diffusers naming serves the release names with the same shapes and values
// (both VAEs: z=16 for A14B, z=48 for TI2V-5B), each tensor's bytes in vae/'s own file.
TEST(DiffusersVae, TinyFolderEqualsTheReleaseFile) {
  TempDir t("formats-vae");
  for (const char* preset : {"tiny-t2v", "tiny-ti2v"}) {
    const fs::path rel = t.path() / (std::string(preset) + "-rel"), dif = t.path() / (std::string(preset) + "-dif");
    make::make_model(tiny(preset, rel, "release"));
    make::make_model(tiny(preset, dif, "diffusers"));
    const std::string type = std::string(preset) == "tiny-ti2v" ? "ti2v" : "t2v";
    const auto a = open_part(formats::detect_model_layout(rel).vae(type));
    const auto b = open_part(formats::detect_model_layout(dif).vae(type));
    const json vcfg = read_json(dif / "vae" / "config.json");
    EXPECT_EQ(vcfg["_class_name"], "AutoencoderKLWan");
    EXPECT_EQ(vcfg["z_dim"], type == "ti2v" ? 48 : 16);
    std::vector<std::string> an = a->names(), bn = b->names();
    std::sort(an.begin(), an.end());
    std::sort(bn.begin(), bn.end());
    EXPECT_EQ(an, bn) << preset;
    for (const std::string& n : an) {
      EXPECT_EQ(b->info(n).path, (dif / "vae" / "diffusion_pytorch_model.safetensors").string());
      EXPECT_TRUE(at::equal(a->load(n), b->load(n))) << n;
    }
    EXPECT_EQ(VaeConfig::from_checkpoint(*b).name(), VaeConfig::from_checkpoint(*a).name());
  }
}

TEST(DiffusersVae, MissingExtraMisshapenKeyNameTheFileAndKey) {
  TempDir t("formats-vae-keys");
  const fs::path d = t.path() / "dif";
  make::make_model(tiny("tiny-t2v", d, "diffusers"));
  const fs::path f = d / "vae" / "diffusion_pytorch_model.safetensors";
  const auto layout = formats::detect_model_layout(d);
  const auto orig = load_safetensors(f.string());
  auto reopen = [&](const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
    auto m = orig;
    edit(m);
    save_safetensors(f.string(), m);
    return what_of([&] { open_part(layout.vae("t2v")); });
  };
  std::string w = reopen([](auto& m) { m.erase("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"); });
  EXPECT_TRUE(has(w, (d / "vae").string()) && has(w, "missing key 'decoder.up_blocks.1.resnets.0.conv_shortcut.weight'") &&
              has(w, "decoder.upsamples.4.shortcut.weight"))
      << w;
  w = reopen([](auto& m) { m["decoder.up_blocks.3.upsamplers.0.resample.1.weight"] = at::zeros({2, 2}); });
  EXPECT_TRUE(has(w, f.string()) && has(w, "decoder.up_blocks.3.upsamplers.0.resample.1.weight")) << w;
  w = reopen([](auto& m) { m["decoder.mid_block.resnets.0.conv1.bias"] = at::zeros({7}); });
  EXPECT_TRUE(has(w, f.string()) && has(w, "decoder.mid_block.resnets.0.conv1.bias") && has(w, "[7]")) << w;
  // The Wan2.2 VAE's names in a Wan2.1 model: refused by the first key it does not know.
  w = reopen([](auto& m) { m["encoder.down_blocks.0.resnets.0.norm1.gamma"] = at::ones({8, 1, 1, 1}); });
  EXPECT_TRUE(has(w, f.string()) && has(w, "key")) << w;
}

// ------------------------------------------------------------------- umT5 keys

// transformers' UMT5EncoderModel names (modeling_umt5.py: encoder.block.N.layer.{0,1}...).
TEST(Umt5TransformersKeys, NamesAreTransformersOwn) {
  using formats::wand_umt5_key;
  EXPECT_EQ(wand_umt5_key("shared.weight"), "token_embedding.weight");
  EXPECT_EQ(wand_umt5_key("encoder.embed_tokens.weight"), "token_embedding.weight");
  EXPECT_EQ(wand_umt5_key("encoder.final_layer_norm.weight"), "norm.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.0.layer.0.layer_norm.weight"), "blocks.0.norm1.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.23.layer.0.SelfAttention.o.weight"), "blocks.23.attn.o.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.5.layer.0.SelfAttention.relative_attention_bias.weight"),
            "blocks.5.pos_embedding.embedding.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.3.layer.1.layer_norm.weight"), "blocks.3.norm2.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.3.layer.1.DenseReluDense.wi_0.weight"), "blocks.3.ffn.gate.0.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.3.layer.1.DenseReluDense.wi_1.weight"), "blocks.3.ffn.fc1.weight");
  EXPECT_EQ(wand_umt5_key("encoder.block.3.layer.1.DenseReluDense.wo.weight"), "blocks.3.ffn.fc2.weight");
  EXPECT_FALSE(wand_umt5_key("decoder.block.0.layer.0.SelfAttention.q.weight"));
  EXPECT_FALSE(wand_umt5_key("encoder.block.x.layer.0.layer_norm.weight"));
}

// The tiny release umT5 rewritten in the transformers naming (with the tied embedding stored
// twice, as some exports do) encodes bit for bit as the .pth through a RenamedSource.
TEST(Umt5TransformersKeys, RenamedSourceEncodesLikeThePth) {
  TempDir t("formats-umt5");
  make::make_model(tiny("tiny-t2v", t.path() / "m", "release"));
  const PthFile pth((t.path() / "m" / kT5CheckpointName).string());
  std::map<std::string, at::Tensor> renamed;
  for (const std::string& n : pth.names()) {
    const auto k = formats::transformers_umt5_key(n);
    ASSERT_TRUE(k) << n;
    EXPECT_EQ(formats::wand_umt5_key(*k), n);
    renamed[*k] = pth.load(n);
  }
  renamed["encoder.embed_tokens.weight"] = renamed.at("shared.weight");
  const fs::path te = t.path() / "m" / "text_encoder";
  fs::create_directories(te);
  save_safetensors((te / "model.safetensors").string(), renamed);
  const RenamedSource src(RenamedSource::folder_files(te), formats::wand_umt5_key, "umT5 (transformers naming)");
  EXPECT_EQ(src.names().size(), pth.names().size());
  EXPECT_EQ(src.info("blocks.0.attn.q.weight").path, (te / "model.safetensors").string());
  const T5Encoder a = T5Encoder::load(pth, RunDtype::kFloat32, at::Device(at::kCPU));
  const T5Encoder b = T5Encoder::load(src, RunDtype::kFloat32, at::Device(at::kCPU));
  const at::Tensor ids = (at::arange(9, at::kLong) * 7 % a.config().vocab).view({1, 9});
  const at::Tensor mask = at::ones({1, 9}, at::kLong);
  const auto ya = a.encode(ids, mask), yb = b.encode(ids, mask);
  ASSERT_EQ(ya.size(), 1u);
  EXPECT_TRUE(at::equal(ya[0], yb[0]));
  // A key of another model (a full T5 with its decoder) is refused, naming file and key.
  renamed["decoder.block.0.layer.0.SelfAttention.q.weight"] = at::zeros({2, 2});
  save_safetensors((te / "model.safetensors").string(), renamed);
  const std::string w = what_of(
      [&] { RenamedSource s(RenamedSource::folder_files(te), formats::wand_umt5_key, "umT5 (transformers naming)"); });
  EXPECT_TRUE(has(w, (te / "model.safetensors").string()) && has(w, "decoder.block.0.layer.0.SelfAttention.q.weight"))
      << w;
}

// The diffusers folder's text_encoder/ (two bf16 shards, transformers naming) and tokenizer/
// encode a prompt bit for bit as the release .pth and google/umt5-xxl/ (the resident
// encoder; the streamed one: t5_stream_test).
TEST(Umt5TransformersKeys, DiffusersTextEncoderAndTokenizerEncodeLikeTheRelease) {
  TempDir t("formats-te");
  make::make_model(tiny("tiny-t2v", t.path() / "rel", "release"));
  make::make_model(tiny("tiny-t2v", t.path() / "dif", "diffusers"));
  const fs::path te = t.path() / "dif" / "text_encoder";
  EXPECT_EQ(read_json(te / "config.json")["architectures"], json::array({"UMT5EncoderModel"}));
  EXPECT_TRUE(read_json(te / "model.safetensors.index.json")["weight_map"].contains("shared.weight"));
  EXPECT_TRUE(fs::exists(t.path() / "dif" / "tokenizer" / "spiece.model"));
  for (RunDtype run : {RunDtype::kFloat32, RunDtype::kBFloat16}) {
    TextEncodeFn a = make_umt5_text_encoder(t.path() / "rel", at::Device(at::kCPU), run);
    TextEncodeFn b = make_umt5_text_encoder(t.path() / "dif", at::Device(at::kCPU), run);
    const at::Tensor x = a("a lighthouse at dusk, 灯塔"), y = b("a lighthouse at dusk, 灯塔");
    EXPECT_TRUE(at::equal(x, y)) << run_dtype_name(run);
  }
  // A diffusers folder may still carry the release files instead (the first diffusers
  // support's stand-ins): used when text_encoder/ or vae/ is absent.
  fs::remove_all(te);
  fs::copy_file(t.path() / "rel" / kT5CheckpointName, t.path() / "dif" / kT5CheckpointName);
  EXPECT_EQ(formats::detect_model_layout(t.path() / "dif").text_encoder().naming, formats::PartNaming::kRelease);
}

// ------------------------------------------------------------------- bad input

// A single-file diffusers expert (no index) to edit key by key.
fs::path single_file_expert(const fs::path& dir) {
  const WanConfig cfg = WanConfig::from_preset("tiny-t2v", kTinyTextDim);
  make::write_dit_expert(dir, cfg, at::kFloat, 3, 1ull << 40, /*diffusers=*/true);
  return dir / CheckpointDir::kSingleName;
}

// Rewrites a safetensors file with `edit` applied to its tensors.
void rewrite(const fs::path& file, const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
  auto m = load_safetensors(file.string());
  edit(m);
  save_safetensors(file.string(), m);
}

TEST(ModelLayoutErrors, MissingExtraMisshapenKeyNameTheFileAndKey) {
  TempDir t("formats-keys");
  {
    const fs::path f = single_file_expert(t.path() / "missing");
    rewrite(f, [](auto& m) { m.erase("blocks.1.attn2.to_k.bias"); });
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "missing"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, "missing key 'blocks.1.attn2.to_k.bias'") &&
                has(w, "blocks.1.cross_attn.k.bias"))
        << w;
  }
  {
    const fs::path f = single_file_expert(t.path() / "extra");
    rewrite(f, [](auto& m) { m["blocks.0.attn2.add_k_proj.weight"] = at::zeros({64, 64}); });
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "extra"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, "unexpected key 'blocks.0.attn2.add_k_proj.weight'")) << w;
  }
  {
    const fs::path f = single_file_expert(t.path() / "shape");
    rewrite(f, [](auto& m) { m["blocks.0.ffn.net.2.weight"] = at::zeros({64, 7}); });
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "shape"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, "'blocks.0.ffn.net.2.weight'") && has(w, "[64, 7]")) << w;
  }
  {  // Release names under a diffusers config: the first missing key, in diffusers naming.
    const fs::path f = single_file_expert(t.path() / "mixed");
    const WanConfig cfg = WanConfig::from_preset("tiny-t2v", kTinyTextDim);
    make::write_dit_expert(t.path() / "mixed_rel", cfg, at::kFloat, 3, 1ull << 40);
    fs::copy_file(t.path() / "mixed_rel" / CheckpointDir::kSingleName, f, fs::copy_options::overwrite_existing);
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "mixed"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, "key")) << w;
  }
}

// Rewrites a safetensors file with `fp8_key` stored as F8_E4M3 (zero bytes) and the
// "scaled_fp8" marker, without the key's scale (written by hand: LibTorch 1.13 has no fp8 type),
// other tensors kept.
void store_one_as_fp8(const fs::path& f, const std::string& fp8_key) {
  const SafetensorsFile src(f.string());
  json header = json::object();
  std::string data;
  for (const std::string& n : src.names()) {
    const TensorInfo& ti = src.info(n);
    const bool fp8 = n == fp8_key;
    std::string bytes;
    if (fp8) {
      bytes.assign(static_cast<std::size_t>(ti.numel()), '\0');
    } else {
      bytes.resize(ti.nbytes);
      read_exact(ti.path, ti.offset, bytes.data(), ti.nbytes);
    }
    header[n] = {{"dtype", fp8 ? "F8_E4M3" : safetensors_dtype_name(ti.dtype)},
                 {"shape", ti.shape},
                 {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  header["scaled_fp8"] = {{"dtype", "F8_E4M3"}, {"shape", {0}}, {"data_offsets", {data.size(), data.size()}}};
  const std::string h = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  write_text(f, out + h + data);
}

// An fp8_scaled file (the "scaled_fp8" marker) without a weight's scale is refused naming
// the file and the key (issue 17 item 2; tests/model/fp8_test.cpp has the rest).
TEST(ModelLayoutErrors, Fp8WithoutScaleIsRefusedNamingFileAndKey) {
  TempDir t("formats-fp8");
  const fs::path f = single_file_expert(t.path() / "fp8");
  store_one_as_fp8(f, "blocks.0.attn1.to_q.weight");
  const std::string w = what_of([&] { CheckpointDir ck(t.path() / "fp8"); });
  EXPECT_TRUE(has(w, f.string()) && has(w, "blocks.0.attn1.to_q.weight") && has(w, "scale")) << w;
}

TEST(ModelLayoutErrors, DiffusersFolderMissingAPart) {
  TempDir t("formats-parts");
  const fs::path d = t.path() / "dif";
  make::make_model(tiny("tiny-t2v", d, "diffusers"));
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.text_encoder = fake_text_encoder(kTinyTextDim);
  // No vae/: the message names vae/ and the release file that may stand in.
  fs::rename(d / "vae", t.path() / "vae");
  std::string w = what_of([&] { WanGenerator g(d, o); });
  EXPECT_TRUE(has(w, "Wan2.1_VAE.pth") && has(w, "vae/") && has(w, d.string())) << w;
  fs::rename(t.path() / "vae", d / "vae");
  // No text_encoder/: the real text encoder says the same on first use.
  fs::remove_all(d / "text_encoder");
  {
    TextEncodeFn enc = make_umt5_text_encoder(d, at::Device(at::kCPU), RunDtype::kFloat32);
    w = what_of([&] { enc("a cat"); });
    EXPECT_TRUE(has(w, "models_t5_umt5-xxl-enc-bf16.pth") && has(w, "text_encoder/")) << w;
  }
  // No tokenizer/spiece.model (a tokenizer.json alone is not read): named with its stand-in.
  fs::rename(d / "tokenizer" / "spiece.model", t.path() / "spiece.model");
  w = what_of([&] { formats::detect_model_layout(d).tokenizer_dir(); });
  EXPECT_TRUE(has(w, (d / "tokenizer" / "spiece.model").string()) && has(w, "google/umt5-xxl") &&
              has(w, "tokenizer.json"))
      << w;
  fs::rename(t.path() / "spiece.model", d / "tokenizer" / "spiece.model");
  // transformer_2 named by model_index.json but not downloaded.
  fs::remove_all(d / "transformer_2");
  w = what_of([&] { WanGenerator g(d, o); });
  EXPECT_TRUE(has(w, "model_index.json") && has(w, "transformer_2")) << w;
  EXPECT_TRUE(has(what_of([&] { WanGenerator::read_dir_config(d); }), "transformer_2"));
  // Another pipeline family.
  json idx = read_json(d / "model_index.json");
  idx["_class_name"] = "FluxPipeline";
  write_text(d / "model_index.json", idx.dump());
  w = what_of([&] { WanGenerator g(d, o); });
  EXPECT_TRUE(has(w, "model_index.json") && has(w, "FluxPipeline")) << w;
  // transformer/ of another model family.
  const fs::path f = t.path() / "flux";
  make::make_model(tiny("tiny-ti2v", f, "diffusers"));
  json c = read_json(f / "transformer" / "config.json");
  c["_class_name"] = "FluxTransformer2DModel";
  write_text(f / "transformer" / "config.json", c.dump());
  w = what_of([&] { WanGenerator g(f, o); });
  EXPECT_TRUE(has(w, (f / "transformer" / "config.json").string()) && has(w, "FluxTransformer2DModel")) << w;
}

// ------------------------------------------------------------------- ComfyUI single files

json manifest_of(const fs::path& dir) { return read_json(dir / formats::kManifestName); }

// Issue 17 item 1: a model of ComfyUI single files named by wand-model.json (Note [Model
// manifest]) gives the same latents and video, bit for bit, as the release layout with the
// same weights: both A14B experts (t2v) and TI2V-5B, the real umT5 from its single
// transformers-named file, the VAE from its release-named safetensors.
TEST(ComfyUI, TinyT2vAndTi2vAreBitwiseTheRelease) {
  TempDir t("formats-comfy");
  for (const char* preset : {"tiny-t2v", "tiny-ti2v"}) {
    const fs::path rel = t.path() / (std::string(preset) + "-rel"), cf = t.path() / (std::string(preset) + "-cf");
    make::make_model(tiny(preset, rel, "release"));
    make::make_model(tiny(preset, cf, "comfyui"));
    const json m = manifest_of(cf);
    EXPECT_EQ(m["format"], "comfyui");
    const auto layout = formats::detect_model_layout(cf);
    EXPECT_EQ(layout.kind, formats::LayoutKind::kComfyUI);
    EXPECT_TRUE(formats::probe_model_layout(cf));
    EXPECT_EQ(layout.text_encoder().naming, formats::PartNaming::kTransformers);
    EXPECT_EQ(layout.vae(layout.model_type).naming, formats::PartNaming::kRelease);
    const bool ti2v = std::string(preset) == "tiny-ti2v";
    ASSERT_EQ(layout.experts.size(), ti2v ? 1u : 2u);
    for (const auto& e : layout.experts) EXPECT_TRUE(e.single_file()) << e.dir;
    if (!ti2v) {
      EXPECT_EQ(m["high_noise"], "wan2.2_t2v_high_noise_tiny_fp32.safetensors");
      const CheckpointDir a(rel / "low_noise_model"), b(layout.experts[1].dir);
      EXPECT_EQ(a.config().variant, b.config().variant);
      EXPECT_EQ(a.names(), b.names());
      EXPECT_EQ(b.info("blocks.0.ffn.0.weight").path, layout.experts[1].dir.string());
    }
    GenRequest req = ti2v ? request("t2v", 64, 64, 3) : request("t2v", 64, 48, 4);
    at::Tensor vr, vc;
    const at::Tensor lr = latents_of(rel, req, &vr, /*real_text=*/true);
    const at::Tensor lc = latents_of(cf, req, &vc, /*real_text=*/true);
    EXPECT_TRUE(at::equal(lr, lc)) << preset << " max diff " << (lr - lc).abs().max().item<double>();
    EXPECT_TRUE(at::equal(vr, vc)) << preset;
  }
}

// ComfyUI files may carry the release names under "model.diffusion_model." (as ComfyUI saves
// a whole checkpoint): the same tensors at their own byte offsets.
TEST(ComfyUI, PrefixedKeysServeTheSameTensors) {
  TempDir t("formats-comfy-prefix");
  make::make_model(tiny("tiny-ti2v", t.path() / "cf", "comfyui"));
  const fs::path f = t.path() / "cf" / manifest_of(t.path() / "cf")["dit"].get<std::string>();
  const CheckpointDir bare(f);
  const fs::path g = t.path() / "prefixed.safetensors";
  std::map<std::string, at::Tensor> m;
  for (const auto& [k, v] : load_safetensors(f.string())) m["model.diffusion_model." + k] = v;
  save_safetensors(g.string(), m);
  const formats::SingleFileExpert se = formats::read_single_file_expert(g, "ti2v");
  EXPECT_EQ(se.prefix, "model.diffusion_model.");
  EXPECT_EQ(se.config.variant, "tiny-ti2v");
  const CheckpointDir pre(g);
  EXPECT_EQ(pre.names(), bare.names());
  for (const std::string& n : pre.names()) EXPECT_TRUE(at::equal(pre.load(n), bare.load(n))) << n;
}

TEST(ComfyUIErrors, BadInputNamesTheFileAndTheKey) {
  TempDir t("formats-comfy-bad");
  const fs::path d = t.path() / "cf";
  make::make_model(tiny("tiny-t2v", d, "comfyui"));
  const json good = manifest_of(d);
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.text_encoder = fake_text_encoder(kTinyTextDim);
  auto load_with = [&](const json& m) {
    write_text(d / formats::kManifestName, m.dump());
    return what_of([&] { WanGenerator g(d, o); });
  };
  {  // A manifest field missing, a file not downloaded.
    json m = good;
    m.erase("low_noise");
    std::string w = load_with(m);
    EXPECT_TRUE(has(w, formats::kManifestName) && has(w, "low_noise")) << w;
    m = good;
    m["vae"] = "nope.safetensors";
    w = load_with(m);
    EXPECT_TRUE(has(w, "'vae'") && has(w, (d / "nope.safetensors").string())) << w;
    m = good;
    m["format"] = "a1111";
    EXPECT_TRUE(has(load_with(m), "a1111"));
  }
  const fs::path high = d / good["high_noise"].get<std::string>();
  const fs::path saved = t.path() / "high.bak";
  fs::copy_file(high, saved);
  {  // fp8 weights (issue 17 item 2): refused naming the file and the key; so are fp8 scales.
    store_one_as_fp8(high, "blocks.1.ffn.2.weight");
    std::string w = load_with(good);
    EXPECT_TRUE(has(w, high.string()) && has(w, "blocks.1.ffn.2.weight") && has(w, "F8_E4M3")) << w;
    fs::copy_file(saved, high, fs::copy_options::overwrite_existing);
    rewrite(high, [](auto& m) { m["blocks.1.ffn.2.scale_weight"] = at::ones({1}); });
    w = load_with(good);
    EXPECT_TRUE(has(w, high.string()) && has(w, "blocks.1.ffn.2.scale_weight") && has(w, "fp8")) << w;
  }
  {  // A missing key, and a truncated file.
    fs::copy_file(saved, high, fs::copy_options::overwrite_existing);
    rewrite(high, [](auto& m) { m.erase("blocks.0.cross_attn.k.weight"); });
    std::string w = load_with(good);
    EXPECT_TRUE(has(w, high.string()) && has(w, "blocks.0.cross_attn.k.weight")) << w;
    fs::copy_file(saved, high, fs::copy_options::overwrite_existing);
    fs::resize_file(high, fs::file_size(high) - 100);
    w = load_with(good);
    EXPECT_TRUE(has(w, high.string())) << w;
  }
  {  // The files of another model type than the manifest says; another model family.
    fs::copy_file(saved, high, fs::copy_options::overwrite_existing);
    json m = good;
    m["model_type"] = "i2v";
    std::string w = load_with(m);
    EXPECT_TRUE(has(w, high.string()) && has(w, "i2v")) << w;
    rewrite(high, [](auto& mm) { mm["patch_embedding.weight"] = at::zeros({7, 16, 1, 2, 2}); });
    w = load_with(good);
    EXPECT_TRUE(has(w, high.string()) && has(w, "patch_embedding.weight")) << w;
  }
}

}  // namespace
}  // namespace wand::model
