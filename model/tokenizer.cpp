#include "model/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>

#include "common/error.h"
#include "common/log.h"

namespace wand::model {

namespace {

const char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581
const char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD
constexpr float kUnkPenalty = 10.0f;  // sentencepiece unigram_model.cc

// Note [tokenizer utf-8]: sentencepiece (util.cc DecodeUTF8 / IsValidDecodeUTF8)
// accepts a character only when its lead byte, length and trail bytes agree and
// the code point is neither overlong, nor a surrogate (U+D800-DFFF), nor above
// U+10FFFF. Anything else consumes ONE byte and emits one U+FFFD, so an encoded
// surrogate ED A0 80 becomes three U+FFFD, an overlong C0 AF two, and bytes
// that follow an invalid lead are looked at afresh (E0 C3 A9 is U+FFFD, U+00E9).
// Returns the length of the valid character at s[0, n), 0 when invalid.
std::size_t valid_utf8_len(const char* s, std::size_t n) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const auto trail = [&](std::size_t k) { return (b(k) & 0xC0) == 0x80; };
  const auto scalar = [](std::uint32_t cp) { return cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (n >= 2 && (c & 0xE0) == 0xC0) {
    const std::uint32_t cp = ((c & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    return trail(1) && cp >= 0x80 ? 2 : 0;
  }
  if (n >= 3 && (c & 0xF0) == 0xE0) {
    const std::uint32_t cp = ((c & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    return trail(1) && trail(2) && cp >= 0x800 && scalar(cp) ? 3 : 0;
  }
  if (n >= 4 && (c & 0xF8) == 0xF0) {
    const std::uint32_t cp = ((c & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
    return trail(1) && trail(2) && trail(3) && cp >= 0x10000 && scalar(cp) ? 4 : 0;
  }
  return 0;
}

// sentencepiece's OneCharLen: the length the lead byte announces (1 for a
// stray trail byte, 4 for F8-FF). The lattice steps by it; the normalized text
// is valid UTF-8, so there it is the character length.
inline std::size_t one_char_len(char c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[(c & 0xFF) >> 4]; }

// darts-clone double-array unit accessors (sentencepiece's charsmap trie).
inline bool unit_has_leaf(std::uint32_t u) { return ((u >> 8) & 1) == 1; }
inline std::uint32_t unit_value(std::uint32_t u) { return u & ((1u << 31) - 1); }
inline std::uint32_t unit_label(std::uint32_t u) { return u & ((1u << 31) | 0xFF); }
inline std::uint32_t unit_offset(std::uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  Tokenizer t = from_model(SpmModel::read(dir + "/spiece.model"));
  wand::log::get("model")->info("tokenizer loaded dir={} pieces={} charsmap_bytes={} byte_fallback={}", dir,
                                t.vocab_size(), t.model_.precompiled_charsmap.size(), t.model_.byte_fallback);
  return t;
}

// Note [tokenizer scores]: the Viterbi must break ties exactly as
// sentencepiece 0.1.97's EncodeOptimized does, or runs of equal-score
// segmentations (`]]]`, `........`, `0000`) come out differently:
//  - a piece's candidate is computed and compared in double (its `score` is the
//    double of a ?: between float and double) but stored as a float path score;
//  - the <unk> candidate is float + float, compared as floats;
//  - a user-defined piece scores float(length) * max_score - 0.1, where
//    max_score is the largest NORMAL score starting from FLT_MIN (so about
//    -0.1 for any real model, whose scores are negative), length in bytes;
//  - <unk> scores min normal score - 10;
//  - on equal candidates the first one stays: for one end position, the
//    longest piece (earliest start) wins.
Tokenizer Tokenizer::from_model(SpmModel model) {
  Tokenizer t;
  t.model_ = std::move(model);
  const std::vector<SpmPiece>& pieces = t.model_.pieces;
  float min_score = std::numeric_limits<float>::max();
  float max_score = std::numeric_limits<float>::min();  // FLT_MIN, as sentencepiece
  for (const SpmPiece& p : pieces) {
    if (p.type == SpmPiece::Type::kNormal) {
      min_score = std::min(min_score, p.score);
      max_score = std::max(max_score, p.score);
    }
  }
  std::vector<std::pair<std::string, int>> keys, user_keys;
  t.lattice_score_.assign(pieces.size(), 0.0);
  t.unk_piece_id_ = -1;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const SpmPiece& p = pieces[i];
    const int id = static_cast<int>(i);
    if (p.type == SpmPiece::Type::kNormal) {
      keys.emplace_back(p.piece, id);
      t.lattice_score_[i] = static_cast<double>(p.score);
    } else if (p.type == SpmPiece::Type::kUserDefined) {
      keys.emplace_back(p.piece, id);
      user_keys.emplace_back(p.piece, id);
      t.lattice_score_[i] = static_cast<double>(static_cast<float>(p.piece.size()) * max_score) - 0.1;
    } else if (p.type == SpmPiece::Type::kUnknown && t.unk_piece_id_ < 0) {
      t.unk_piece_id_ = id;
    }
  }
  t.pieces_trie_.build(std::move(keys));
  t.user_defined_trie_.build(std::move(user_keys));
  if (t.pieces_trie_.empty()) throw Error(ErrorCode::kModelFormat, "tokenizer model has no normal or user-defined pieces");
  // sentencepiece emits the id of the UNKNOWN piece; a model without one (only
  // hand-made ones) falls back to trainer_spec.unk_id.
  if (t.unk_piece_id_ < 0) {
    if (t.model_.unk_id < 0 || t.model_.unk_id >= static_cast<int>(pieces.size())) {
      throw Error(ErrorCode::kModelFormat, "tokenizer model has no <unk> piece and unk_id " +
                                               std::to_string(t.model_.unk_id) + " is outside the vocabulary");
    }
    t.unk_piece_id_ = t.model_.unk_id;
  }
  t.unk_score_ = min_score - kUnkPenalty;
  if (t.model_.byte_fallback) {
    t.byte_ids_.assign(256, -1);
    for (std::size_t i = 0; i < t.model_.pieces.size(); ++i) {
      const SpmPiece& p = t.model_.pieces[i];
      if (p.type == SpmPiece::Type::kByte && p.piece.size() == 6 && p.piece.compare(0, 3, "<0x") == 0) {
        t.byte_ids_[std::stoi(p.piece.substr(3, 2), nullptr, 16)] = static_cast<int>(i);
      }
    }
  }
  const std::string& cm = t.model_.precompiled_charsmap;
  if (!cm.empty()) {
    if (cm.size() < 4) throw Error(ErrorCode::kModelFormat, "tokenizer: precompiled_charsmap truncated");
    std::uint32_t trie_bytes;
    std::memcpy(&trie_bytes, cm.data(), 4);
    if (trie_bytes % 4 != 0 || 4 + static_cast<std::size_t>(trie_bytes) > cm.size()) {
      throw Error(ErrorCode::kModelFormat, "tokenizer: precompiled_charsmap trie size " + std::to_string(trie_bytes) +
                                               " does not fit its " + std::to_string(cm.size()) + " bytes");
    }
    t.trie_.resize(trie_bytes / 4);
    std::memcpy(t.trie_.data(), cm.data() + 4, trie_bytes);
    t.replacements_ = cm.substr(4 + trie_bytes);
  }
  return t;
}

const std::string& Tokenizer::piece(int64_t id) const {
  if (id < 0 || id >= vocab_size()) throw Error(ErrorCode::kBadRequest, "tokenizer: id " + std::to_string(id) + " out of range");
  return model_.pieces[static_cast<std::size_t>(id)].piece;
}

std::pair<std::uint32_t, std::size_t> Tokenizer::charsmap_prefix(const char* s, std::size_t n) const {
  // darts-clone commonPrefixSearch, keeping the longest match. No special case
  // for NUL: like darts, a 0 byte simply finds no unit labelled 0.
  if (trie_.empty()) return {0, 0};
  std::size_t node = 0;
  std::uint32_t unit = trie_[node];
  node ^= unit_offset(unit);
  std::size_t best_len = 0;
  std::uint32_t best_value = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    node ^= c;
    if (node >= trie_.size()) break;
    unit = trie_[node];
    if (unit_label(unit) != c) break;
    node ^= unit_offset(unit);
    if (node >= trie_.size()) break;
    if (unit_has_leaf(unit)) {
      best_len = i + 1;
      best_value = unit_value(trie_[node]);
    }
  }
  if (best_len == 0) return {0, 0};
  if (best_value >= replacements_.size()) throw Error(ErrorCode::kModelFormat, "tokenizer: charsmap value out of range");
  return {best_value, best_len};
}

Tokenizer::Prefix Tokenizer::normalize_prefix(const char* s, std::size_t n) const {
  // User-defined symbols first, longest match, verbatim (sentencepiece's
  // PrefixMatcher): "ＡＢ" defined as a piece stays full width.
  if (!user_defined_trie_.empty()) {
    const std::size_t len = user_defined_trie_.longest_prefix(s, n).first;
    if (len > 0) return {s, len, len};
  }
  const auto m = charsmap_prefix(s, n);
  if (m.second > 0) {
    const char* r = replacements_.c_str() + m.first;  // NUL separated
    return {r, std::strlen(r), m.second};
  }
  const std::size_t cl = valid_utf8_len(s, n);
  if (cl == 0) return {kReplacementChar, 3, 1};  // Note [tokenizer utf-8]
  return {s, cl, cl};
}

std::string Tokenizer::normalize(const std::string& text) const {
  // sentencepiece Normalizer::Normalize (treat_whitespace_as_suffix off, as umT5).
  const char* p = text.data();
  std::size_t n = text.size();
  if (model_.remove_extra_whitespaces) {
    while (n > 0) {
      const Prefix m = normalize_prefix(p, n);
      if (!(m.size == 1 && m.data[0] == ' ')) break;
      p += m.consumed;
      n -= m.consumed;
    }
  }
  std::string out;
  if (n == 0) return out;
  out.reserve(n * 3 + 3);
  const std::string_view space = model_.escape_whitespaces ? std::string_view(kSpaceSymbol, 3) : std::string_view(" ");
  if (model_.add_dummy_prefix) out += space;
  bool prev_space = model_.remove_extra_whitespaces;
  while (n > 0) {
    const Prefix m = normalize_prefix(p, n);
    const char* d = m.data;
    std::size_t len = m.size;
    if (prev_space) {
      while (len > 0 && *d == ' ') {
        ++d;
        --len;
      }
    }
    if (len > 0) {
      for (std::size_t k = 0; k < len; ++k) {
        if (d[k] == ' ' && model_.escape_whitespaces) out.append(kSpaceSymbol, 3);
        else out.push_back(d[k]);
      }
      prev_space = d[len - 1] == ' ';
    }
    p += m.consumed;
    n -= m.consumed;
    if (!model_.remove_extra_whitespaces) prev_space = false;
  }
  if (model_.remove_extra_whitespaces) {
    while (out.size() >= space.size() && out.compare(out.size() - space.size(), space.size(), space) == 0) {
      out.resize(out.size() - space.size());
    }
  }
  return out;
}

std::vector<int64_t> Tokenizer::encode_ids(const std::string& text) const {
  // sentencepiece unigram Model::EncodeOptimized: the best path ending at each
  // byte position, extended from every character start by the pieces the trie
  // finds there (Note [tokenizer scores] for the arithmetic).
  const std::string s = normalize(text);
  const std::size_t n = s.size();
  struct BestPath {
    int id = -1;
    float score = 0;
    std::ptrdiff_t start = -1;  // -1: not reached yet
  };
  std::vector<BestPath> best(n + 1);
  for (std::size_t start = 0; start < n;) {
    const float here = best[start].score;
    const std::size_t mblen = std::min(one_char_len(s[start]), n - start);
    bool single = false;
    pieces_trie_.prefixes(s.data() + start, n - start, [&](std::size_t len, int id) {
      BestPath& t = best[start + len];
      const double cand = lattice_score_[static_cast<std::size_t>(id)] + here;
      if (t.start < 0 || cand > t.score) t = {id, static_cast<float>(cand), static_cast<std::ptrdiff_t>(start)};
      if (len == mblen) single = true;
    });
    if (!single) {
      BestPath& t = best[start + mblen];
      const float cand = unk_score_ + here;
      if (t.start < 0 || cand > t.score) t = {unk_piece_id_, cand, static_cast<std::ptrdiff_t>(start)};
    }
    start += mblen;
  }
  // Backtrack: (id, [start, end)) pieces in reverse.
  std::vector<std::pair<int, std::pair<std::size_t, std::size_t>>> path;
  for (std::size_t end = n; end > 0;) {
    const BestPath& b = best[end];
    WAND_ASSERT(b.start >= 0, "tokenizer: viterbi lattice broken");
    path.push_back({b.id, {static_cast<std::size_t>(b.start), end}});
    end = static_cast<std::size_t>(b.start);
  }
  std::vector<int64_t> ids;
  ids.reserve(path.size());
  bool prev_unk = false;
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    const int id = it->first;
    if (id != unk_piece_id_) {
      ids.push_back(id);
      prev_unk = false;
      continue;
    }
    if (model_.byte_fallback) {
      for (std::size_t k = it->second.first; k < it->second.second; ++k) {
        const int b = byte_ids_[static_cast<unsigned char>(s[k])];
        ids.push_back(b >= 0 ? b : unk_piece_id_);
      }
      continue;  // byte pieces are not <unk>: nothing to fuse
    }
    if (!prev_unk) ids.push_back(unk_piece_id_);  // fuse consecutive unknowns
    prev_unk = true;
  }
  return ids;
}

TokenizedText Tokenizer::encode(const std::string& text, int text_len) const {
  if (text_len < 1) throw Error(ErrorCode::kBadRequest, "tokenizer: text_len must be >= 1");
  std::vector<int64_t> pieces = encode_ids(text);
  const std::size_t keep = std::min<std::size_t>(pieces.size(), static_cast<std::size_t>(text_len - 1));
  TokenizedText t;
  t.ids.assign(static_cast<std::size_t>(text_len), pad_id());
  t.mask.assign(static_cast<std::size_t>(text_len), 0);
  for (std::size_t i = 0; i < keep; ++i) {
    t.ids[i] = pieces[i];
    t.mask[i] = 1;
  }
  t.ids[keep] = eos_id();
  t.mask[keep] = 1;
  t.length = static_cast<int64_t>(keep) + 1;
  return t;
}

}  // namespace wand::model
