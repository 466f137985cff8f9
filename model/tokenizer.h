// The umT5 tokenizer: a SentencePiece unigram model (google/umt5-xxl/spiece.model)
// encoded the way the pipelines call the HF tokenizer (padding='max_length',
// truncation=True, add_special_tokens=True): pieces, at most text_len - 1 of
// them, then </s> (no BOS), right-padded with <pad> = 0.
//
//   Tokenizer tok = Tokenizer::load(ckpt_dir + "/google/umt5-xxl");
//   TokenizedText t = tok.encode(clean_text(prompt));   // text_len 512
//   // t.ids / t.mask: 512 int64 each; t.length = pieces + 1 (EOS)
//
// Encoding follows sentencepiece: the normalizer (precompiled charsmap, when
// the model has one, longest match first; extra whitespace removal; dummy
// prefix; spaces -> U+2581), then the Viterbi best segmentation over the
// normal and user-defined pieces, characters no piece covers become <unk>
// (consecutive ones fused into one) or, with byte_fallback, <0xXX> pieces.
// Immutable after load; encode() may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

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
  // Longest charsmap match at the start of s: (replacement, consumed bytes); consumed 0 = none.
  std::pair<std::string, std::size_t> charsmap_prefix(const char* s, std::size_t n) const;

  SpmModel model_;
  std::unordered_map<std::string, int> piece_ids_;  // normal + user-defined pieces
  std::size_t max_piece_bytes_ = 0;
  float unk_score_ = 0;
  std::vector<std::uint32_t> trie_;  // charsmap darts-clone units
  std::string replacements_;         // charsmap replacement strings, NUL separated
  std::vector<int> byte_ids_;        // <0xXX> piece ids when byte_fallback (256 entries)
};

}  // namespace wand::model
