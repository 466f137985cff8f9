// Tokenizer / SpmModel: protobuf round trip, the HF call conventions (EOS, no
// BOS, padding, truncation, mask), Viterbi segmentation on a hand-made model,
// unknown fusing, byte fallback, a synthetic precompiled charsmap, and the
// tiny vocabulary builder.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "model/tokenizer.h"

using namespace wand::model;

namespace {
const std::string kU = "\xE2\x96\x81";  // U+2581

SpmModel hand_model() {
  SpmModel m;
  m.unk_id = 2;
  m.bos_id = -1;
  m.eos_id = 1;
  m.pad_id = 0;
  m.normalizer_name = "identity";
  m.pieces = {{"<pad>", 0, SpmPiece::Type::kControl}, {"</s>", 0, SpmPiece::Type::kControl},
              {"<unk>", 0, SpmPiece::Type::kUnknown}};
  auto add = [&](const std::string& p, float s) { m.pieces.push_back({p, s, SpmPiece::Type::kNormal}); };
  add(kU, -2);             // 3
  add(kU + "a", -3);       // 4
  add("b", -3);            // 5
  add(kU + "ab", -5.5f);   // 6: better than ▁a + b (-6)
  add("c", -4);            // 7
  add("bc", -6.5f);        // 8: better than b + c (-7)
  add("a", -3);            // 9
  return m;
}
}  // namespace

TEST(Tokenizer, ViterbiPicksBestSegmentation) {
  Tokenizer t = Tokenizer::from_model(hand_model());
  EXPECT_EQ(t.normalize("  ab   c "), kU + "ab" + kU + "c");
  // "▁ab": ▁ab (-5.5) beats ▁a+b (-6).
  EXPECT_EQ(t.encode_ids("ab"), (std::vector<int64_t>{6}));
  // "▁abbc": ▁ab + bc = -12 beats ▁ab + b + c and ▁a + b + bc (-12.5).
  EXPECT_EQ(t.encode_ids("abbc"), (std::vector<int64_t>{6, 8}));
  // Unknown characters: each run fused into one <unk>.
  EXPECT_EQ(t.encode_ids("a" "\xE7\x8C\xAB\xE7\x8B\x97" "b"), (std::vector<int64_t>{4, 2, 5}));
  EXPECT_EQ(t.encode_ids(""), (std::vector<int64_t>{}));
}

TEST(Tokenizer, EncodeAppendsEosPadsAndTruncates) {
  Tokenizer t = Tokenizer::from_model(hand_model());
  TokenizedText x = t.encode("ab c", 6);
  EXPECT_EQ(x.ids, (std::vector<int64_t>{6, 3, 7, 1, 0, 0}));  // ▁ab ▁ c </s> pad pad
  EXPECT_EQ(x.mask, (std::vector<int64_t>{1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(x.length, 4);
  TokenizedText y = t.encode("ab ab ab ab", 4);  // 4 pieces -> 3 kept + EOS
  EXPECT_EQ(y.ids, (std::vector<int64_t>{6, 6, 6, 1}));
  EXPECT_EQ(y.length, 4);
  TokenizedText e = t.encode("", 3);
  EXPECT_EQ(e.ids, (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(e.length, 1);
  EXPECT_THROW(t.encode("a", 0), wand::Error);
}

TEST(Tokenizer, ByteFallbackSplitsUnknownsIntoBytes) {
  SpmModel m = hand_model();
  m.byte_fallback = true;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    m.pieces.push_back({name, 0, SpmPiece::Type::kByte});
  }
  Tokenizer t = Tokenizer::from_model(m);
  const int64_t base = 10;  // first byte piece
  EXPECT_EQ(t.encode_ids("a\xC3\xA9"), (std::vector<int64_t>{4, base + 0xC3, base + 0xA9}));
}

TEST(Tokenizer, PrecompiledCharsmapIsApplied) {
  // A darts-clone trie with the single key "A" -> "a" (see Tokenizer::charsmap_prefix).
  std::vector<std::uint32_t> units(0x142, 0);
  units[0] = 0x100u << 10;                    // root: offset 0x100
  units[0x141] = 0x41u | (1u << 8) | (1u << 10);  // label 'A', has leaf, offset 1
  units[0x140] = (1u << 31) | 0u;             // leaf: value 0 = offset into replacements
  std::string cm(4, '\0');
  const std::uint32_t bytes = static_cast<std::uint32_t>(units.size() * 4);
  std::memcpy(&cm[0], &bytes, 4);
  cm.append(reinterpret_cast<const char*>(units.data()), bytes);
  cm += std::string("a\0", 2);
  SpmModel m = hand_model();
  m.precompiled_charsmap = cm;
  Tokenizer t = Tokenizer::from_model(m);
  EXPECT_EQ(t.normalize("AB  A"), kU + "aB" + kU + "a");
  EXPECT_EQ(t.encode_ids("Ab"), (std::vector<int64_t>{6}));
}

TEST(SpmModel, SerializeParseRoundTripAndErrors) {
  SpmModel m = hand_model();
  m.byte_fallback = true;
  m.remove_extra_whitespaces = false;
  SpmModel r = SpmModel::parse(m.serialize(), "mem");
  ASSERT_EQ(r.pieces.size(), m.pieces.size());
  for (std::size_t i = 0; i < m.pieces.size(); ++i) {
    EXPECT_EQ(r.pieces[i].piece, m.pieces[i].piece);
    EXPECT_EQ(r.pieces[i].score, m.pieces[i].score);
    EXPECT_EQ(r.pieces[i].type, m.pieces[i].type);
  }
  EXPECT_EQ(r.unk_id, 2);
  EXPECT_EQ(r.bos_id, -1);
  EXPECT_EQ(r.eos_id, 1);
  EXPECT_EQ(r.pad_id, 0);
  EXPECT_TRUE(r.byte_fallback);
  EXPECT_FALSE(r.remove_extra_whitespaces);
  EXPECT_TRUE(r.add_dummy_prefix);
  EXPECT_EQ(r.normalizer_name, "identity");
  const std::string b = m.serialize();
  EXPECT_THROW(SpmModel::parse(b.substr(0, b.size() / 2), "half"), wand::Error);
  EXPECT_THROW(SpmModel::parse("garbage!", "garbage"), wand::Error);
  try {
    Tokenizer::load("/nonexistent/dir");
    ADD_FAILURE();
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), wand::ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/spiece.model"), std::string::npos);
  }
}

TEST(SpmModel, BuildUnigramIsDeterministicAndCoversItsCorpus) {
  const std::vector<std::string> lines = {"a cat sits on the mat", "the cat eats", "一只猫在草地上", "猫在吃东西",
                                          "the mat is red"};
  SpmModel a = SpmModel::build_unigram(lines, 64);
  SpmModel b = SpmModel::build_unigram(lines, 64);
  EXPECT_EQ(a.serialize(), b.serialize());
  EXPECT_EQ(a.pieces.size(), 64u);
  EXPECT_EQ(a.pieces[0].piece, "<pad>");
  EXPECT_EQ(a.pieces[1].piece, "</s>");
  EXPECT_EQ(a.pieces[2].piece, "<unk>");
  Tokenizer t = Tokenizer::from_model(a);
  for (const auto& line : lines) {
    auto ids = t.encode_ids(line);
    std::string joined;
    for (auto id : ids) {
      EXPECT_NE(id, t.unk_id()) << line;
      joined += t.piece(id);
    }
    EXPECT_EQ(joined, t.normalize(line));
    EXPECT_LT(ids.size(), t.normalize(line).size());  // multi-character pieces are used
  }
  // Characters outside the corpus: the dummy-prefix piece, then one fused <unk>.
  const auto unk = t.encode_ids("xyz");
  ASSERT_EQ(unk.size(), 2u);
  EXPECT_EQ(t.piece(unk[0]), kU);
  EXPECT_EQ(unk[1], t.unk_id());
}
