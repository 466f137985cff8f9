#include "model/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/error.h"
#include "common/log.h"

namespace wand::model {

namespace {

const std::string kSpaceSymbol = "\xE2\x96\x81";  // U+2581

std::size_t utf8_len(const char* s, std::size_t n) {
  const unsigned char c = static_cast<unsigned char>(s[0]);
  std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || len > n) return 0;  // invalid
  for (std::size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(s[k]) >> 6) != 0x2) return 0;
  }
  return len;
}

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

Tokenizer Tokenizer::from_model(SpmModel model) {
  Tokenizer t;
  t.model_ = std::move(model);
  float min_score = std::numeric_limits<float>::max();
  for (std::size_t i = 0; i < t.model_.pieces.size(); ++i) {
    const SpmPiece& p = t.model_.pieces[i];
    if (p.type == SpmPiece::Type::kNormal || p.type == SpmPiece::Type::kUserDefined) {
      t.piece_ids_.emplace(p.piece, static_cast<int>(i));
      t.max_piece_bytes_ = std::max(t.max_piece_bytes_, p.piece.size());
      if (p.type == SpmPiece::Type::kNormal) min_score = std::min(min_score, p.score);
    }
  }
  if (t.piece_ids_.empty()) throw Error(ErrorCode::kModelFormat, "tokenizer model has no normal pieces");
  t.unk_score_ = min_score - 10.0f;  // sentencepiece's kUnkPenalty
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

std::pair<std::string, std::size_t> Tokenizer::charsmap_prefix(const char* s, std::size_t n) const {
  if (trie_.empty()) return {std::string(), 0};
  std::size_t node = 0;
  std::uint32_t unit = trie_[node];
  node ^= unit_offset(unit);
  std::size_t best_len = 0;
  std::uint32_t best_value = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) break;
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
  if (best_len == 0) return {std::string(), 0};
  if (best_value >= replacements_.size()) throw Error(ErrorCode::kModelFormat, "tokenizer: charsmap value out of range");
  return {std::string(replacements_.c_str() + best_value), best_len};
}

std::string Tokenizer::normalize(const std::string& text) const {
  // sentencepiece Normalizer::Normalize (no user-defined-symbol matcher).
  const char* p = text.data();
  std::size_t n = text.size();
  auto next = [&](const char* s, std::size_t len) -> std::pair<std::string, std::size_t> {
    auto m = charsmap_prefix(s, len);
    if (m.second) return m;
    const std::size_t cl = utf8_len(s, len);
    if (cl == 0) return {"\xEF\xBF\xBD", 1};  // invalid byte -> U+FFFD
    return {std::string(s, cl), cl};
  };
  if (model_.remove_extra_whitespaces) {
    while (n > 0) {
      auto m = next(p, n);
      if (m.first != " ") break;
      p += m.second;
      n -= m.second;
    }
  }
  std::string out;
  if (n == 0) return out;
  const std::string space = model_.escape_whitespaces ? kSpaceSymbol : " ";
  if (model_.add_dummy_prefix) out += space;
  bool prev_space = model_.remove_extra_whitespaces;
  while (n > 0) {
    auto m = next(p, n);
    std::string sp = m.first;
    if (prev_space) {
      std::size_t k = 0;
      while (k < sp.size() && sp[k] == ' ') ++k;
      sp.erase(0, k);
    }
    if (!sp.empty()) {
      for (char c : sp) {
        if (c == ' ' && model_.escape_whitespaces) out += kSpaceSymbol;
        else out.push_back(c);
      }
      prev_space = sp.back() == ' ';
    }
    p += m.second;
    n -= m.second;
    if (!model_.remove_extra_whitespaces) prev_space = false;
  }
  if (model_.remove_extra_whitespaces) {
    while (out.size() >= space.size() && out.compare(out.size() - space.size(), space.size(), space) == 0) {
      out.erase(out.size() - space.size());
    }
  }
  return out;
}

std::vector<int64_t> Tokenizer::encode_ids(const std::string& text) const {
  const std::string s = normalize(text);
  const std::size_t n = s.size();
  struct Node {
    int id = -1;  // -1 unset, -2 unknown
    float score = 0;
    std::size_t start = 0;
    bool reached = false;
  };
  std::vector<Node> best(n + 1);
  best[0].reached = true;
  float max_score = -std::numeric_limits<float>::max();
  for (auto& p : model_.pieces) max_score = std::max(max_score, p.score);
  for (std::size_t pos = 0; pos < n;) {
    const std::size_t cl = std::max<std::size_t>(1, utf8_len(s.data() + pos, n - pos));
    if (best[pos].reached) {
      bool single = false;
      for (std::size_t end = pos + cl; end <= n && end - pos <= max_piece_bytes_;) {
        auto it = piece_ids_.find(s.substr(pos, end - pos));
        if (it != piece_ids_.end()) {
          const SpmPiece& pc = model_.pieces[static_cast<std::size_t>(it->second)];
          const float sc = pc.type == SpmPiece::Type::kUserDefined
                               ? static_cast<float>(end - pos) * max_score - 0.1f
                               : pc.score;
          const float cand = best[pos].score + sc;
          if (!best[end].reached || cand > best[end].score) best[end] = {it->second, cand, pos, true};
          if (end == pos + cl) single = true;
        }
        if (end >= n) break;
        end += std::max<std::size_t>(1, utf8_len(s.data() + end, n - end));
      }
      if (!single) {
        const float cand = best[pos].score + unk_score_;
        if (!best[pos + cl].reached || cand > best[pos + cl].score) best[pos + cl] = {-2, cand, pos, true};
      }
    }
    pos += cl;
  }
  // Backtrack.
  std::vector<std::pair<int, std::pair<std::size_t, std::size_t>>> path;  // id, [start, end)
  for (std::size_t end = n; end > 0;) {
    const Node& b = best[end];
    WAND_ASSERT(b.reached, "tokenizer: viterbi lattice broken");
    path.push_back({b.id, {b.start, end}});
    end = b.start;
  }
  std::reverse(path.begin(), path.end());
  std::vector<int64_t> ids;
  bool prev_unk = false;
  for (auto& e : path) {
    if (e.first != -2) {
      ids.push_back(e.first);
      prev_unk = false;
      continue;
    }
    if (model_.byte_fallback) {
      for (std::size_t k = e.second.first; k < e.second.second; ++k) {
        const int id = byte_ids_[static_cast<unsigned char>(s[k])];
        ids.push_back(id >= 0 ? id : model_.unk_id);
      }
      prev_unk = false;
      continue;
    }
    if (!prev_unk) ids.push_back(model_.unk_id);  // fuse consecutive unknowns
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
