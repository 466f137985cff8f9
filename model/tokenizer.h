// The umT5 tokenizer: a SentencePiece unigram model (google/umt5-xxl/spiece.model)
// encoded the way the pipelines call the HF tokenizer (padding='max_length',
// truncation=True, add_special_tokens=True): pieces, at most text_len - 1 of
// them, then </s> (no BOS), right-padded with <pad> = 0.
//
//   Tokenizer tok = Tokenizer::load(ckpt_dir + "/google/umt5-xxl");
//   TokenizedText t = tok.encode(clean_text(prompt));   // text_len 512
//   // t.ids / t.mask: 512 int64 each; t.length = pieces + 1 (EOS)
//
// Encoding follows sentencepiece 0.1.97 (Debian 12's; checked against its
// spm_encode by tests/model/tokenizer_conformance_test.cpp): the normalizer
// (user-defined symbols first, longest match, copied verbatim; else the
// precompiled charsmap, longest match; else one UTF-8 character, or U+FFFD for
// one byte that does not start a valid one; extra whitespace removal; dummy
// prefix; spaces -> U+2581), then the Viterbi best segmentation over the normal
// and user-defined pieces (a byte trie, model/piece_trie.h); characters no
// piece covers become <unk> (consecutive ones fused into one) or, with
// byte_fallback, <0xXX> pieces.
// Immutable after load; encode() may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/piece_trie.h"
#include "model/tokenizer_spm.h"

namespace wand::model {

struct TokenizedText {
  std::vector<int64_t> ids;   // [text_len] piece ids, </s>, then 0
  std::vector<int64_t> mask;  // [text_len] 1 for pieces and </s>, 0 for padding
  int64_t length = 0;         // number of ones in mask
};

class Tokenizer {
 public:
  // dir holds spiece.model (throws kNotFound naming the path when it is absent).
  static Tokenizer load(const std::string& dir);
  static Tokenizer from_model(SpmModel model);

  TokenizedText encode(const std::string& text, int text_len = 512) const;
  // The piece ids alone (no EOS, no padding, no truncation).
  std::vector<int64_t> encode_ids(const std::string& text) const;
  // sentencepiece's normalised form ("▁a▁photo").
  std::string normalize(const std::string& text) const;

  int64_t vocab_size() const { return static_cast<int64_t>(model_.pieces.size()); }
  int64_t eos_id() const { return model_.eos_id; }
  int64_t pad_id() const { return model_.pad_id < 0 ? 0 : model_.pad_id; }
  int64_t unk_id() const { return model_.unk_id; }
  const std::string& piece(int64_t id) const;

 private:
  // One step of sentencepiece's Normalizer::NormalizePrefix at s[0, n): the
  // bytes it emits (data, size) and the input bytes it consumes (>= 1).
  struct Prefix {
    const char* data;
    std::size_t size;
    std::size_t consumed;
  };
  Prefix normalize_prefix(const char* s, std::size_t n) const;
  // Longest charsmap match at the start of s: (replacement offset, consumed bytes); consumed 0 = none.
  std::pair<std::uint32_t, std::size_t> charsmap_prefix(const char* s, std::size_t n) const;

  SpmModel model_;
  PieceTrie pieces_trie_;        // normal + user-defined pieces -> id
  PieceTrie user_defined_trie_;  // user-defined pieces (the normalizer's prefix matcher)
  std::vector<double> lattice_score_;  // per id: the score the Viterbi adds (see Note [tokenizer scores])
  float unk_score_ = 0;
  int unk_piece_id_ = 0;
  std::vector<std::uint32_t> trie_;  // charsmap darts-clone units
  std::string replacements_;         // charsmap replacement strings, NUL separated
  std::vector<int> byte_ids_;        // <0xXX> piece ids when byte_fallback (256 entries)
};

}  // namespace wand::model
