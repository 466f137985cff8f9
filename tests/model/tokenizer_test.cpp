// Tokenizer / SpmModel / PieceTrie: protobuf round trip, the HF call
// conventions (EOS, no BOS, padding, truncation, mask), Viterbi segmentation on
// a hand-made model, unknown fusing, byte fallback, a synthetic precompiled
// charsmap, the tiny vocabulary builder, the three sentencepiece rules of issue
// 19 (double score comparison, strict UTF-8, verbatim user-defined symbols), the
// piece trie, and a loose speed guard with a umT5-sized vocabulary.
// (tokenizer_conformance_test.cpp compares with real sentencepiece.)
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "model/piece_trie.h"
#include "model/tokenizer.h"
#include "model/tokenizer_synth.h"

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

// A darts-clone trie with the single key "A" -> "a" (see Tokenizer::charsmap_prefix).
static std::string charsmap_a_to_lower() {
  std::vector<std::uint32_t> units(0x142, 0);
  units[0] = 0x100u << 10;                    // root: offset 0x100
  units[0x141] = 0x41u | (1u << 8) | (1u << 10);  // label 'A', has leaf, offset 1
  units[0x140] = (1u << 31) | 0u;             // leaf: value 0 = offset into replacements
  std::string cm(4, '\0');
  const std::uint32_t bytes = static_cast<std::uint32_t>(units.size() * 4);
  std::memcpy(&cm[0], &bytes, 4);
  cm.append(reinterpret_cast<const char*>(units.data()), bytes);
  cm += std::string("a\0", 2);
  return cm;
}

TEST(Tokenizer, PrecompiledCharsmapIsApplied) {
  const std::string cm = charsmap_a_to_lower();
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
  // A second TrainerSpec with treat_whitespace_as_suffix (field 24) = 1: refused, not mis-encoded.
  try {
    SpmModel::parse(b + std::string("\x12\x03\xC0\x01\x01", 5), "suffix.model");
    ADD_FAILURE();
  } catch (const wand::Error& e) {
    EXPECT_NE(std::string(e.what()).find("treat_whitespace_as_suffix"), std::string::npos) << e.what();
  }
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

TEST(Tokenizer, CandidatesAreComparedInDoubleAsSentencepiece) {
  // Note [tokenizer scores]. "abc" (-3) is found first; a + b + c reaches
  // -2 + -0.99999994 = -2.99999994 in double, which rounds to -3.0f: a float
  // comparison keeps "abc" (a tie), sentencepiece's double comparison takes a b c.
  SpmModel m = hand_model();
  m.add_dummy_prefix = false;
  m.pieces.resize(3);
  auto add = [&](const std::string& p, float s) { m.pieces.push_back({p, s, SpmPiece::Type::kNormal}); };
  add("a", -1.0f);                // 3
  add("b", -1.0f);                // 4
  add("c", -0.99999994f);         // 5
  add("abc", -3.0f);              // 6
  ASSERT_EQ(-2.0f + -0.99999994f, -3.0f);
  Tokenizer t = Tokenizer::from_model(m);
  EXPECT_EQ(t.encode_ids("abc"), (std::vector<int64_t>{3, 4, 5}));
  // Equal scores in double too: the first candidate (the longest piece) stays.
  m.pieces[5].score = -1.0f;
  EXPECT_EQ(Tokenizer::from_model(m).encode_ids("abc"), (std::vector<int64_t>{6}));
}

TEST(Tokenizer, InvalidUtf8BecomesOneReplacementCharacterPerByte) {
  // Note [tokenizer utf-8]: sentencepiece's DecodeUTF8 rules.
  Tokenizer t = Tokenizer::from_model(hand_model());
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(t.normalize("\xC0\xAF"), kU + r + r);                       // overlong '/'
  EXPECT_EQ(t.normalize("\xE0\x80\xAF"), kU + r + r + r);               // overlong, 3 bytes
  EXPECT_EQ(t.normalize("\xF0\x80\x80\xAF"), kU + r + r + r + r);       // overlong, 4 bytes
  EXPECT_EQ(t.normalize("\xED\xA0\x80"), kU + r + r + r);               // encoded surrogate U+D800
  EXPECT_EQ(t.normalize("\xF4\x90\x80\x80"), kU + r + r + r + r);       // U+110000
  EXPECT_EQ(t.normalize("\xF8\x88\x80\x80\x80"), kU + r + r + r + r + r);
  EXPECT_EQ(t.normalize("a\xC3"), kU + "a" + r);                        // truncated
  EXPECT_EQ(t.normalize("\xE0\xC3\xA9"), kU + r + "\xC3\xA9");          // the next byte starts afresh
  EXPECT_EQ(t.normalize(r), kU + r);                                    // a real U+FFFD passes
  EXPECT_EQ(t.normalize("\xF4\x8F\xBF\xBF\xEE\x80\x80"), kU + "\xF4\x8F\xBF\xBF\xEE\x80\x80");  // U+10FFFF, U+E000
  // With byte fallback the ids are the replacement character's bytes, once per bad byte.
  SpmModel m = hand_model();
  m.byte_fallback = true;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    m.pieces.push_back({name, 0, SpmPiece::Type::kByte});
  }
  const int64_t base = 10;
  EXPECT_EQ(Tokenizer::from_model(m).encode_ids("a\xED\xA0"),
            (std::vector<int64_t>{4, base + 0xEF, base + 0xBF, base + 0xBD, base + 0xEF, base + 0xBF, base + 0xBD}));
}

TEST(Tokenizer, UserDefinedSymbolsAreMatchedFirstAndCopiedVerbatim) {
  SpmModel m = hand_model();
  m.precompiled_charsmap = charsmap_a_to_lower();  // "A" -> "a"
  m.pieces.push_back({"AB", 0, SpmPiece::Type::kUserDefined});    // 10
  m.pieces.push_back({"ABC", 0, SpmPiece::Type::kUserDefined});   // 11
  m.pieces.push_back({"<ctl>", 0, SpmPiece::Type::kControl});     // 12: never matched in text
  Tokenizer t = Tokenizer::from_model(m);
  // The longest user-defined symbol wins over the charsmap and over shorter symbols.
  EXPECT_EQ(t.normalize("ABCA AB A"), kU + "ABCa" + kU + "AB" + kU + "a");
  EXPECT_EQ(t.encode_ids("ABCA"), (std::vector<int64_t>{3, 11, 9}));  // ▁ ABC a
  EXPECT_EQ(t.encode_ids("ab AB"), (std::vector<int64_t>{6, 3, 10}));  // ▁ab ▁ AB
  // A control symbol in the text is just text: characters no piece covers.
  const auto ids = t.encode_ids("<ctl>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 12), 0);
}

TEST(PieceTrie, PrefixesShortestFirstLongestMatchAndDenseNodes) {
  PieceTrie t;
  std::vector<std::pair<std::string, int>> keys = {{"a", 1}, {"ab", 2}, {"abcd", 3}, {"b", 4}, {"ab", 9}, {"", 7}};
  for (int c = 0; c < 40; ++c) keys.push_back({std::string("x") + static_cast<char>('0' + c), 100 + c});  // a dense node
  keys.push_back({std::string("\xFF\x00", 2), 200});
  t.build(keys);
  std::vector<std::pair<std::size_t, int>> seen;
  t.prefixes("abcde", 5, [&](std::size_t len, int v) { seen.push_back({len, v}); });
  EXPECT_EQ(seen, (std::vector<std::pair<std::size_t, int>>{{1, 1}, {2, 2}, {4, 3}}));  // "ab" given twice: first wins
  EXPECT_EQ(t.longest_prefix("abc", 3), (std::pair<std::size_t, int>{2, 2}));
  EXPECT_EQ(t.longest_prefix("abcd", 3), (std::pair<std::size_t, int>{2, 2}));  // n bounds the search
  EXPECT_EQ(t.longest_prefix("c", 1), (std::pair<std::size_t, int>{0, -1}));
  for (int c = 0; c < 40; ++c) {
    const std::string k = std::string("x") + static_cast<char>('0' + c);
    EXPECT_EQ(t.longest_prefix(k.data(), 2), (std::pair<std::size_t, int>{2, 100 + c})) << k;
  }
  EXPECT_EQ(t.longest_prefix("x~", 2), (std::pair<std::size_t, int>{0, -1}));
  EXPECT_EQ(t.longest_prefix("\xFF\x00z", 3), (std::pair<std::size_t, int>{2, 200}));
  PieceTrie empty;
  empty.build({});
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.longest_prefix("a", 1), (std::pair<std::size_t, int>{0, -1}));
}

TEST(Tokenizer, EncodesUmt5SizedVocabularyQuickly) {
  // Issue 19: 1,000 typical prompts with 256,384 pieces in under 100 ms on one
  // core (bench/tokenizer measures it). This guard is loose (500 ms, best of 3)
  // so that a loaded CI machine passes, yet a per-call vocabulary scan (the old
  // encoder took 4.7 s) fails.
#ifndef NDEBUG
  GTEST_SKIP() << "the timing guard needs an optimized build (NDEBUG)";
#endif
  const Tokenizer t = Tokenizer::from_model(synthetic_umt5_model());
  ASSERT_EQ(t.vocab_size(), kUmt5VocabSize);
  const std::vector<std::string> prompts = typical_prompts(1000);
  double best = 1e9;
  std::size_t pieces = 0;
  for (int k = 0; k < 3; ++k) {
    pieces = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& p : prompts) pieces += t.encode_ids(p).size();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("[ info ] 1000 prompts -> %zu pieces in %.1f ms (best of 3)\n", pieces, best * 1e3);
  EXPECT_GT(pieces, 50000u);  // ~100 pieces a prompt, as with umT5
  EXPECT_LT(best, 0.5) << "encoding 1,000 prompts took " << best * 1e3 << " ms";
  // The segmentation spells the normalized text (no <unk>: byte fallback covers all).
  for (std::size_t i = 0; i < 50; ++i) {
    std::string joined;
    for (int64_t id : t.encode_ids(prompts[i])) {
      const std::string& p = t.piece(id);
      ASSERT_NE(id, t.unk_id());
      if (p.size() == 6 && p.compare(0, 3, "<0x") == 0) joined.push_back(static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
      else joined += p;
    }
    EXPECT_EQ(joined, t.normalize(prompts[i]));
  }
}
