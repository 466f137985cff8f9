#include "model/tokenizer_spm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "common/error.h"

namespace wand::model {

// Wire format of sentencepiece_model.proto (proto2), the fields used here:
//   ModelProto      1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec
//   SentencePiece   1: string piece, 2: float score, 3: enum Type
//   TrainerSpec     3: model_type, 4: vocab_size, 24: treat_whitespace_as_suffix, 35: byte_fallback,
//                   40: unk_id, 41: bos_id, 42: eos_id, 43: pad_id
//   NormalizerSpec  1: name, 2: bytes precompiled_charsmap, 3: add_dummy_prefix,
//                   4: remove_extra_whitespaces, 5: escape_whitespaces
// Unknown fields are skipped.

namespace {

struct Reader {
  const std::string& b;
  std::size_t pos, end;
  const std::string& ctx;
  [[noreturn]] void fail(const std::string& m) const {
    throw Error(ErrorCode::kModelFormat, ctx + ": " + m + " at byte " + std::to_string(pos));
  }
  bool done() const { return pos >= end; }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) fail("truncated varint");
      const unsigned char c = static_cast<unsigned char>(b[pos++]);
      v |= static_cast<std::uint64_t>(c & 0x7F) << shift;
      if (!(c & 0x80)) return v;
    }
    fail("varint too long");
  }
  std::pair<std::size_t, std::size_t> bytes() {
    const std::uint64_t n = varint();
    if (n > end - pos) fail("length-delimited field overruns its message");
    const std::size_t s = pos;
    pos += n;
    return {s, s + n};
  }
  std::uint32_t fixed32() {
    if (end - pos < 4) fail("truncated fixed32");
    std::uint32_t v;
    std::memcpy(&v, b.data() + pos, 4);
    pos += 4;
    return v;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1:
        if (end - pos < 8) fail("truncated fixed64");
        pos += 8;
        break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail("unsupported wire type " + std::to_string(wire));
    }
  }
};

void put_varint(std::string* s, std::uint64_t v) {
  while (v >= 0x80) {
    s->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  s->push_back(static_cast<char>(v));
}
void put_key(std::string* s, int field, int wire) { put_varint(s, (static_cast<std::uint64_t>(field) << 3) | wire); }
void put_bytes(std::string* s, int field, const std::string& v) {
  put_key(s, field, 2);
  put_varint(s, v.size());
  *s += v;
}
void put_int(std::string* s, int field, std::int64_t v) {
  put_key(s, field, 0);
  put_varint(s, static_cast<std::uint64_t>(v));  // negative int32: 10-byte two's complement, as protobuf does
}

std::size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

}  // namespace

SpmModel SpmModel::parse(const std::string& bytes, const std::string& ctx) {
  SpmModel m;
  Reader r{bytes, 0, bytes.size(), ctx};
  while (!r.done()) {
    const std::uint64_t key = r.varint();
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 2) {
      auto span = r.bytes();
      Reader p{bytes, span.first, span.second, ctx};
      SpmPiece piece;
      while (!p.done()) {
        const std::uint64_t k = p.varint();
        const int f = static_cast<int>(k >> 3), w = static_cast<int>(k & 7);
        if (f == 1 && w == 2) {
          auto s = p.bytes();
          piece.piece = bytes.substr(s.first, s.second - s.first);
        } else if (f == 2 && w == 5) {
          const std::uint32_t u = p.fixed32();
          std::memcpy(&piece.score, &u, 4);
        } else if (f == 3 && w == 0) {
          const std::uint64_t t = p.varint();
          if (t < 1 || t > 6) p.fail("piece type " + std::to_string(t) + " unknown");
          piece.type = static_cast<SpmPiece::Type>(t);
        } else {
          p.skip(w);
        }
      }
      m.pieces.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {
      auto span = r.bytes();
      Reader t{bytes, span.first, span.second, ctx};
      while (!t.done()) {
        const std::uint64_t k = t.varint();
        const int f = static_cast<int>(k >> 3), w = static_cast<int>(k & 7);
        if (w != 0) {
          t.skip(w);
          continue;
        }
        const auto v = static_cast<std::int32_t>(static_cast<std::uint32_t>(t.varint()));
        switch (f) {
          case 3: m.model_type = v; break;
          case 24:
            // The normalizer would then put U+2581 after words, not before:
            // not implemented (umT5 and every T5 vocabulary use the prefix).
            if (v != 0) t.fail("trainer_spec.treat_whitespace_as_suffix is set, which the tokenizer does not support");
            break;
          case 35: m.byte_fallback = v != 0; break;
          case 40: m.unk_id = v; break;
          case 41: m.bos_id = v; break;
          case 42: m.eos_id = v; break;
          case 43: m.pad_id = v; break;
          default: break;
        }
      }
    } else if (field == 3 && wire == 2) {
      auto span = r.bytes();
      Reader n{bytes, span.first, span.second, ctx};
      while (!n.done()) {
        const std::uint64_t k = n.varint();
        const int f = static_cast<int>(k >> 3), w = static_cast<int>(k & 7);
        if ((f == 1 || f == 2) && w == 2) {
          auto s = n.bytes();
          (f == 1 ? m.normalizer_name : m.precompiled_charsmap) = bytes.substr(s.first, s.second - s.first);
        } else if (f >= 3 && f <= 5 && w == 0) {
          const bool v = n.varint() != 0;
          if (f == 3) m.add_dummy_prefix = v;
          if (f == 4) m.remove_extra_whitespaces = v;
          if (f == 5) m.escape_whitespaces = v;
        } else {
          n.skip(w);
        }
      }
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.empty()) throw Error(ErrorCode::kModelFormat, ctx + ": no pieces (not a sentencepiece model)");
  if (m.model_type != 1) {
    throw Error(ErrorCode::kModelFormat, ctx + ": model_type " + std::to_string(m.model_type) +
                                             " is not unigram (the umT5 tokenizer is unigram)");
  }
  const int n = static_cast<int>(m.pieces.size());
  for (int id : {m.unk_id, m.eos_id}) {
    if (id < 0 || id >= n) throw Error(ErrorCode::kModelFormat, ctx + ": special id " + std::to_string(id) + " outside the vocabulary");
  }
  return m;
}

SpmModel SpmModel::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "tokenizer model " + path + " not found");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse(bytes, path);
}

std::string SpmModel::serialize() const {
  std::string out;
  for (const SpmPiece& p : pieces) {
    std::string msg;
    put_bytes(&msg, 1, p.piece);
    put_key(&msg, 2, 5);
    std::uint32_t u;
    std::memcpy(&u, &p.score, 4);
    for (int i = 0; i < 4; ++i) msg.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
    if (p.type != SpmPiece::Type::kNormal) put_int(&msg, 3, static_cast<int>(p.type));
    put_bytes(&out, 1, msg);
  }
  std::string trainer;
  put_int(&trainer, 3, model_type);
  put_int(&trainer, 4, static_cast<std::int64_t>(pieces.size()));
  put_int(&trainer, 35, byte_fallback ? 1 : 0);
  put_int(&trainer, 40, unk_id);
  put_int(&trainer, 41, bos_id);
  put_int(&trainer, 42, eos_id);
  put_int(&trainer, 43, pad_id);
  put_bytes(&out, 2, trainer);
  std::string norm;
  put_bytes(&norm, 1, normalizer_name);
  if (!precompiled_charsmap.empty()) put_bytes(&norm, 2, precompiled_charsmap);
  put_int(&norm, 3, add_dummy_prefix ? 1 : 0);
  put_int(&norm, 4, remove_extra_whitespaces ? 1 : 0);
  put_int(&norm, 5, escape_whitespaces ? 1 : 0);
  put_bytes(&out, 3, norm);
  return out;
}

void SpmModel::write(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::string b = serialize();
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
  if (!out) throw Error(ErrorCode::kIo, "write " + path + " failed");
}

SpmModel SpmModel::build_unigram(const std::vector<std::string>& lines, int vocab_size) {
  static const std::string kSpace = "\xE2\x96\x81";  // U+2581
  // Normalise like the identity normalizer: collapse spaces, dummy prefix, escape.
  std::map<std::string, std::int64_t> chars, subs;
  for (const std::string& line : lines) {
    std::vector<std::string> cps;  // code points of "▁word▁word"
    bool space = true;
    for (std::size_t i = 0; i < line.size();) {
      const std::size_t n = std::min(utf8_len(static_cast<unsigned char>(line[i])), line.size() - i);
      const std::string c = line.substr(i, n);
      i += n;
      if (c == " " || c == "\t" || c == "\n") {
        space = true;
        continue;
      }
      if (space) cps.push_back(kSpace);
      space = false;
      cps.push_back(c);
    }
    for (std::size_t i = 0; i < cps.size(); ++i) {
      ++chars[cps[i]];
      std::string s = cps[i];
      for (std::size_t k = i + 1; k < cps.size() && k < i + 6; ++k) {
        if (cps[k] == kSpace) break;  // pieces never hold an inner ▁
        s += cps[k];
        ++subs[s];
      }
    }
  }
  SpmModel m;
  m.unk_id = 2;
  m.bos_id = -1;
  m.eos_id = 1;
  m.pad_id = 0;
  m.normalizer_name = "identity";
  m.pieces.push_back({"<pad>", 0.0f, SpmPiece::Type::kControl});
  m.pieces.push_back({"</s>", 0.0f, SpmPiece::Type::kControl});
  m.pieces.push_back({"<unk>", 0.0f, SpmPiece::Type::kUnknown});
  std::vector<std::pair<std::int64_t, std::string>> ranked;  // (-(count * extra chars), piece)
  for (auto& kv : subs) {
    std::size_t n_cp = 0;
    for (std::size_t i = 0; i < kv.first.size(); i += utf8_len(static_cast<unsigned char>(kv.first[i]))) ++n_cp;
    ranked.emplace_back(-kv.second * static_cast<std::int64_t>(n_cp - 1), kv.first);
  }
  std::sort(ranked.begin(), ranked.end());
  const std::size_t room = vocab_size > static_cast<int>(3 + chars.size())
                               ? static_cast<std::size_t>(vocab_size) - 3 - chars.size() : 0;
  if (ranked.size() > room) ranked.resize(room);
  double total = 0;
  for (auto& kv : chars) total += static_cast<double>(kv.second);
  for (auto& r : ranked) total += static_cast<double>(subs[r.second]);
  std::vector<SpmPiece> normal;
  for (auto& kv : chars) normal.push_back({kv.first, static_cast<float>(std::log(kv.second / total)), SpmPiece::Type::kNormal});
  for (auto& r : ranked) {
    normal.push_back({r.second, static_cast<float>(std::log(subs[r.second] / total)), SpmPiece::Type::kNormal});
  }
  // sentencepiece orders normal pieces by descending score.
  std::stable_sort(normal.begin(), normal.end(), [](const SpmPiece& a, const SpmPiece& b) {
    return a.score != b.score ? a.score > b.score : a.piece < b.piece;
  });
  m.pieces.insert(m.pieces.end(), normal.begin(), normal.end());
  return m;
}

}  // namespace wand::model
