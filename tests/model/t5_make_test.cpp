// wand-make-model's umT5 part: the tiny preset writes a checkpoint + tokenizer
// that load and run end to end (text -> clean -> tokens -> trimmed context);
// the streamed writer is deterministic per seed and follows the release
// layout and init statistics.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/error.h"
#include "common/torch_compat.h"
#include "model/make_model/parts.h"
#include "model/pth.h"
#include "model/t5_encoder.h"
#include "model/t5_writer.h"
#include "model/text_clean.h"
#include "model/tokenizer.h"

namespace fs = std::filesystem;
using namespace wand::model;

namespace {
fs::path tmp(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("wand_t5_make_" + std::to_string(::getpid())) / name;
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
}  // namespace

TEST(T5Make, TinyPresetRunsEndToEnd) {
  const fs::path root = tmp("tiny");
  make::write_t5_part(root, "tiny-t2v", 42);
  ASSERT_TRUE(fs::exists(root / "models_t5_umt5-xxl-enc-bf16.pth"));
  for (const char* f : {"spiece.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    EXPECT_TRUE(fs::exists(root / "google/umt5-xxl" / f)) << f;
  }
  Tokenizer tok = Tokenizer::load((root / "google/umt5-xxl").string());
  T5Encoder enc = T5Encoder::load((root / "models_t5_umt5-xxl-enc-bf16.pth").string(), RunDtype::kFloat32, at::kCPU);
  EXPECT_EQ(enc.config().vocab, tok.vocab_size());
  EXPECT_EQ(enc.config().dim, make::t5_dim_for_preset("tiny-t2v"));
  EXPECT_EQ(enc.config().dim_attn, 64);
  EXPECT_EQ(enc.config().dim_ffn, 160);
  EXPECT_EQ(enc.config().num_heads, 4);
  EXPECT_EQ(enc.num_layers(), 2);
  PthFile f((root / "models_t5_umt5-xxl-enc-bf16.pth").string());
  EXPECT_EQ(f.names().size(), 22u);
  for (const auto& n : f.names()) EXPECT_EQ(f.info(n).dtype, at::kBFloat16) << n;

  const std::string prompts[] = {clean_text("A cat walks slowly through a sunny park, cinematic lighting."),
                                 clean_text(kDefaultNegativePrompt)};
  for (const auto& p : prompts) {
    TokenizedText t = tok.encode(p, 512);
    for (int64_t i = 0; i + 1 < t.length; ++i) EXPECT_NE(t.ids[i], tok.unk_id()) << p;
    EXPECT_EQ(t.ids[t.length - 1], 1);
    at::Tensor ids = at::tensor(t.ids, at::kLong).view({1, 512});
    at::Tensor mask = at::tensor(t.mask, at::kLong).view({1, 512});
    auto ctx = enc.encode(ids, mask);
    ASSERT_EQ(ctx.size(), 1u);
    EXPECT_EQ(ctx[0].size(0), t.length);
    EXPECT_EQ(ctx[0].size(1), 64);
    EXPECT_TRUE(at::isfinite(ctx[0]).all().item<bool>());
  }
  // encode_texts = clean + tokenize + encode + trim, one call per text.
  auto texts = enc.encode_texts(tok, {"  A cat\u3000walks &amp; runs ", kDefaultNegativePrompt}, 32);
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0].size(0), tok.encode(clean_text("A cat walks & runs"), 32).length);
  EXPECT_EQ(texts[1].size(0), 32);  // the negative prompt is longer than 31 pieces: truncated
  // The same text in bf16 stays close to fp32.
  T5Encoder bf = T5Encoder::load((root / "models_t5_umt5-xxl-enc-bf16.pth").string(), RunDtype::kBFloat16, at::kCPU);
  TokenizedText t = tok.encode(prompts[0], 64);
  at::Tensor ids = at::tensor(t.ids, at::kLong).view({1, 64}), mask = at::tensor(t.mask, at::kLong).view({1, 64});
  at::Tensor a = enc.forward(ids, mask), b = bf.forward(ids, mask).to(at::kFloat);
  EXPECT_LT(((a - b).norm() / a.norm()).item<double>(), 2e-2);
  EXPECT_THROW(make::write_t5_part(tmp("bad"), "t2v-A99B", 1), wand::Error);
  fs::remove_all(root.parent_path());
}

TEST(T5Make, StreamedCheckpointIsDeterministicWithReleaseInit) {
  T5Config c;
  c.vocab = 1000;
  c.dim = 96;
  c.dim_attn = 128;
  c.dim_ffn = 200;
  c.num_heads = 8;
  c.num_layers = 3;
  c.num_buckets = 32;
  const fs::path d = tmp("mid");
  write_t5_checkpoint(d / "a.pth", c, 5);
  write_t5_checkpoint(d / "b.pth", c, 5);
  write_t5_checkpoint(d / "c.pth", c, 6);
  // Archive names differ (a/b); compare the tensors instead of raw bytes.
  PthFile a((d / "a.pth").string()), b((d / "b.pth").string()), cc((d / "c.pth").string());
  const auto layout = t5_checkpoint_layout(c);
  ASSERT_EQ(a.names().size(), layout.size());
  for (std::size_t i = 0; i < layout.size(); ++i) {
    EXPECT_EQ(a.names()[i], layout[i].first);
    EXPECT_EQ(a.info(layout[i].first).shape, layout[i].second);
    EXPECT_TRUE(at::equal(a.load(layout[i].first), b.load(layout[i].first))) << layout[i].first;
  }
  EXPECT_FALSE(at::equal(a.load("blocks.0.attn.q.weight"), cc.load("blocks.0.attn.q.weight")));
  T5Config got = T5Config::from_source(a);
  EXPECT_EQ(got.vocab, 1000);
  EXPECT_EQ(got.num_heads, 8);
  EXPECT_EQ(got.dim_attn, 128);
  EXPECT_EQ(got.num_layers, 3);
  auto stdev = [&](const std::string& n) { return a.load(n, at::kFloat).std().item<double>(); };
  EXPECT_NEAR(stdev("token_embedding.weight"), 1.0, 0.02);
  EXPECT_NEAR(stdev("blocks.1.attn.q.weight"), std::sqrt(1.0 / (96 * 16)), 0.003);
  EXPECT_NEAR(stdev("blocks.1.ffn.fc2.weight"), std::sqrt(1.0 / 200), 0.005);
  EXPECT_NEAR(stdev("blocks.2.pos_embedding.embedding.weight"), 0.5, 0.06);
  EXPECT_NEAR(a.load("norm.weight", at::kFloat).mean().item<double>(), 1.0, 0.03);
  fs::remove_all(d.parent_path());
}
