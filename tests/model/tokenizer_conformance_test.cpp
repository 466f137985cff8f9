// The umT5 tokenizer against real sentencepiece (Debian's 0.1.97 command line
// tools, package `sentencepiece`: spm_train, spm_encode). The test writes a
// seeded multilingual corpus, trains three unigram models the way umT5's was
// trained (nmt_nfkc normalization, dummy prefix, pad 0 / eos 1 / unk 2, no
// BOS):
//   v8k       8,000 pieces, unknown characters -> <unk>;
//   v4k_bytes 4,000 pieces, byte_fallback (unknown characters -> <0xXX>);
//   v3k_user  3,000 pieces, user-defined symbols (full width, a ligature, NFD,
//             emoji, prefixes of one another) and control symbols.
// (umT5's own vocabulary is 256,384 pieces; models of 8k-32k pieces take tens
// of seconds to train on two cores, these take a few seconds each.)
// Then it encodes 2,000 seeded strings of each class below with spm_encode
// (ids, and pieces, from which the normalized text is rebuilt) and with
// wand::model::Tokenizer, and requires zero differences in ids and in the
// normalized text. spm_encode reads one string per line, so no string holds a
// '\n'.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace fs = std::filesystem;
using wand::model::SpmModel;
using wand::model::SpmPiece;
using wand::model::Tokenizer;

namespace {

// splitmix64: the same strings on every platform (std distributions are not specified exactly).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }
  int range(int lo, int hi) { return lo + static_cast<int>(below(static_cast<std::uint32_t>(hi - lo + 1))); }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(static_cast<std::uint32_t>(v.size()))]; }
  // Zipf-like: small indices much more often (rare characters fall outside character_coverage).
  std::uint32_t skewed(std::uint32_t n) {
    const double u = static_cast<double>(next() >> 11) * 0x1.0p-53;
    return static_cast<std::uint32_t>(static_cast<double>(n) * u * u * u) % n;
  }

 private:
  std::uint64_t s_;
};

std::string utf8(char32_t cp) {
  std::string o;
  if (cp < 0x80) {
    o.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    o.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    o.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    o.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    o.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    o.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    o.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    o.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return o;
}

std::string escaped(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      o.push_back(static_cast<char>(c));
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02X", c);
      o += b;
    }
  }
  return o;
}

std::string ids_text(const std::vector<int64_t>& ids) {
  std::string o;
  for (auto id : ids) o += (o.empty() ? "" : " ") + std::to_string(id);
  return o;
}

// ---- text -----------------------------------------------------------------

// Symbols given to spm_train for v3k_user. Full width, a ligature, NFD, the
// angstrom sign and a half-width katakana pair all change under NFKC, so they
// only survive if matched before normalization; "<img" / "<img>" / "<img_big>"
// and "]]" / "]]]]" test the longest match.
const std::vector<std::string> kUserSymbols = {
    "<sep>", "<img", "<img>", "<img_big>", "]]", "]]]]", "\xEF\xBC\xA1\xEF\xBC\xA2" /* ＡＢ */,
    "\xEF\xAC\x81" /* ﬁ */, "e\xCC\x81" /* e + U+0301 */, "\xE2\x84\xAB" /* U+212B */,
    "\xF0\x9F\x99\x82" /* 🙂 */, "\xEF\xBD\xB6\xEF\xBE\x9E" /* ｶﾞ */, "cat", "\xE2\x91\xA0" /* ① */};
const std::vector<std::string> kControlSymbols = {"<ctrl>", "<mask>", "[CLS]"};

struct Script {
  std::vector<char32_t> chars;
  bool spaces = true;  // words separated by spaces
};

std::vector<char32_t> span(char32_t lo, char32_t hi) {
  std::vector<char32_t> v;
  for (char32_t c = lo; c <= hi; ++c) v.push_back(c);
  return v;
}

const std::vector<Script>& scripts() {
  static const std::vector<Script> kScripts = [] {
    std::vector<Script> s;
    Script latin;
    for (char c : std::string("etaoinshrdlcumwfgypbvkjxqz")) latin.chars.push_back(static_cast<char32_t>(c));
    for (char32_t c : {U'\u00E9', U'\u00E8', U'\u00FC', U'\u00F1', U'\u00E7', U'\u00E5', U'\u00F8', U'\u00DF'}) latin.chars.push_back(c);
    s.push_back(latin);
    s.push_back({span(0x0430, 0x044F), true});   // Cyrillic
    s.push_back({span(0x03B1, 0x03C9), true});   // Greek
    Script cjk{{}, false};                       // 1,500 Han characters, no spaces
    Rng r(7);
    for (int i = 0; i < 1500; ++i) cjk.chars.push_back(0x4E00 + r.below(0x5000));
    s.push_back(cjk);
    s.push_back({span(0x3041, 0x3093), false});  // Hiragana
    s.push_back({span(0x30A1, 0x30F6), false});  // Katakana
    Script hangul{{}, true};
    for (int i = 0; i < 600; ++i) hangul.chars.push_back(0xAC00 + r.below(11172));
    s.push_back(hangul);
    s.push_back({span(0x0627, 0x064A), true});   // Arabic
    s.push_back({span(0x0915, 0x094C), true});   // Devanagari
    s.push_back({span(0x0E01, 0x0E3A), false});  // Thai
    return s;
  }();
  return kScripts;
}

std::string word(Rng& r, const Script& sc) {
  std::string w;
  const int n = r.range(1, sc.spaces ? 8 : 4);
  for (int i = 0; i < n; ++i) w += utf8(sc.chars[r.skewed(static_cast<std::uint32_t>(sc.chars.size()))]);
  return w;
}

const std::vector<std::string> kPunct = {".", ",", "!", "?", "...", "]]]", "[[", "((", "))", "--", "\xE2\x80\x94",
                                         "\xE3\x80\x82", "\xE3\x80\x81", "\xEF\xBC\x8C", ":", ";", "\"", "'", "0000",
                                         "........", "!!!", "===", "__", "#", "%", "&", "*"};

std::string sentence(Rng& r) {
  const Script& sc = scripts()[r.below(static_cast<std::uint32_t>(scripts().size()))];
  std::string s;
  const int n = r.range(3, 24);
  for (int i = 0; i < n; ++i) {
    if (!s.empty() && (sc.spaces || r.chance(0.15))) s += ' ';
    const std::uint32_t k = r.below(100);
    if (k < 70) {
      std::string w = word(r, sc);
      if (r.chance(0.1) && w[0] >= 'a' && w[0] <= 'z') w[0] = static_cast<char>(w[0] - 32);
      s += w;
    } else if (k < 78) {
      s += std::to_string(r.skewed(100000));
    } else if (k < 92) {
      s += r.pick(kPunct);
    } else if (k < 95) {
      s += r.pick(kUserSymbols);
    } else if (k < 97) {
      s += utf8(0x1F600 + r.below(64));  // emoji
    } else {
      s += word(r, scripts()[0]);  // a Latin word inside any script
    }
  }
  return s;
}

// ---- test strings, one generator per class ----------------------------------

std::string gen_ties(Rng& r) {
  static const std::vector<std::string> kUnits = {"]", ".", "0", "-", "=", "!", "a", "ab", "ha", "\xE3\x80\x82",
                                                  "\xE3\x83\xBC", "*", "~", "_", "#", "9", "00", "1", "x", "()",
                                                  "[", ")", ",", "?", "/", "+", "\xE2\x80\x94", "o", "la"};
  std::string s;
  const int runs = r.range(1, 3);
  for (int k = 0; k < runs; ++k) {
    if (r.chance(0.4)) s += sentence(r).substr(0, static_cast<std::size_t>(r.range(0, 12)));
    if (r.chance(0.3)) s += ' ';
    const std::string& u = r.pick(kUnits);
    const int n = r.range(1, 40);
    for (int i = 0; i < n; ++i) s += u;
    if (r.chance(0.3)) s += ' ';
  }
  return s;
}

std::string gen_invalid_utf8(Rng& r) {
  auto trail = [&] { return static_cast<char>(0x80 + r.below(0x40)); };
  std::string s;
  const int parts = r.range(1, 8);
  for (int k = 0; k < parts; ++k) {
    switch (r.below(14)) {
      case 0: s += static_cast<char>(0xC0 + r.below(2)); s += trail(); break;                 // overlong 2-byte
      case 1: s += '\xE0'; s += static_cast<char>(0x80 + r.below(0x20)); s += trail(); break; // overlong 3-byte
      case 2: s += '\xF0'; s += static_cast<char>(0x80 + r.below(0x10)); s += trail(); s += trail(); break;
      case 3: s += '\xED'; s += static_cast<char>(0xA0 + r.below(0x20)); s += trail(); break; // surrogate
      case 4: s += '\xF4'; s += static_cast<char>(0x90 + r.below(0x30)); s += trail(); s += trail(); break;  // > U+10FFFF
      case 5: s += static_cast<char>(0xF5 + r.below(3)); s += trail(); s += trail(); s += trail(); break;
      case 6: s += static_cast<char>(0xF8 + r.below(8)); break;                                 // never valid
      case 7: s += trail(); break;                                                               // lone trail
      case 8: s += static_cast<char>(0xC2 + r.below(30)); break;                                // truncated 2-byte
      case 9: s += static_cast<char>(0xE1 + r.below(12)); s += trail(); break;                  // truncated 3-byte
      case 10: s += '\xEF'; s += '\xBF'; s += '\xBD'; break;                                    // a real U+FFFD
      case 11: s += utf8(0x80 + r.below(0x10F000)).substr(0, 1); break;
      case 12: s += ' '; break;
      default: s += word(r, scripts()[r.below(static_cast<std::uint32_t>(scripts().size()))]); break;
    }
  }
  return s;
}

std::string gen_user_defined(Rng& r) {
  static const std::vector<std::string> kNear = {"<im", "<img_b", "<img_bi", "<sep", "sep>", "]", "]]]", "]]]]]",
                                                 "AB", "\xEF\xBC\xA1", "\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3",
                                                 "fi", "\xC3\xA9", "e", "\xC3\x85", "\xF0\x9F\x99\x82\xEF\xB8\x8F",
                                                 "\xE3\x82\xAC", "\xEF\xBD\xB6", "ca", "cats", "concat", "1",
                                                 "<ctrl>", "<mask>", "[CLS]", "<", ">", " ", "  "};
  std::string s;
  const int parts = r.range(1, 8);
  for (int k = 0; k < parts; ++k) {
    const std::uint32_t c = r.below(10);
    if (c < 4) s += r.pick(kUserSymbols);
    else if (c < 7) s += r.pick(kNear);
    else if (c < 8) s += ' ';
    else s += sentence(r).substr(0, static_cast<std::size_t>(r.range(1, 16)));
  }
  return s;
}

std::string gen_mixed_scripts(Rng& r) {
  std::string s;
  const int parts = r.range(1, 10);
  for (int k = 0; k < parts; ++k) {
    s += word(r, scripts()[r.below(static_cast<std::uint32_t>(scripts().size()))]);
    const std::uint32_t c = r.below(6);
    if (c < 2) s += ' ';
    else if (c == 2) s += std::to_string(r.below(1000));
    else if (c == 3) s += r.pick(kPunct);
  }
  return s;
}

// Canonical decomposition of the few precomposed Latin letters used here.
std::string nfd_latin(char32_t c) {
  switch (c) {
    case 0xE9: return "e\xCC\x81";
    case 0xE8: return "e\xCC\x80";
    case 0xFC: return "u\xCC\x88";
    case 0xF1: return "n\xCC\x83";
    case 0xE7: return "c\xCC\xA7";
    case 0xE5: return "a\xCC\x8A";
    case 0xC5: return "A\xCC\x8A";
    case 0x1EC7: return "e\xCC\xA3\xCC\x82";  // ệ
    default: return utf8(c);
  }
}

std::string gen_normal_forms(Rng& r) {
  static const std::vector<char32_t> kPrecomposed = {0xE9, 0xE8, 0xFC, 0xF1, 0xE7, 0xE5, 0xC5, 0x1EC7};
  static const std::vector<std::string> kCompat = {
      "\xEF\xAC\x81", "\xEF\xAC\x82", "\xE2\x91\xA0", "\xE2\x91\xB3", "\xC2\xB2", "\xC2\xBD", "\xE2\x85\xAB",
      "\xE3\x8E\x8F", "\xE3\x8E\x9E", "\xE2\x84\xAB", "\xE2\x84\xA6", "\xEF\xBC\xA1", "\xEF\xBD\x9A", "\xEF\xBD\xB6",
      "\xEF\xBE\x9E", "\xE3\x88\xB1", "\xE2\x84\x96", "\xE2\x84\xA2", "\xC2\xA0", "\xE2\x80\xA6", "\xEF\xB9\x90",
      "\xE3\x80\x9C", "\xC3\x9F", "\xC4\xB0", "\xEF\xAC\x80", "\xE1\xBA\x9E", "\xCE\x90", "\xE1\xBF\x93"};
  static const std::vector<std::string> kMarks = {"\xCC\x81", "\xCC\x80", "\xCC\x88", "\xCC\xA3", "\xCC\x82",
                                                  "\xCC\xA7", "\xCD\x85", "\xE3\x82\x99"};
  std::string s;
  const int parts = r.range(1, 10);
  for (int k = 0; k < parts; ++k) {
    switch (r.below(7)) {
      case 0: {
        const char32_t c = r.pick(kPrecomposed);
        s += r.chance(0.5) ? utf8(c) : nfd_latin(c);
        break;
      }
      case 1: {  // Hangul syllable, precomposed or as conjoining jamo
        const char32_t syl = 0xAC00 + r.below(11172);
        if (r.chance(0.5)) {
          s += utf8(syl);
        } else {
          const char32_t i = syl - 0xAC00;
          s += utf8(0x1100 + i / 588) + utf8(0x1161 + (i % 588) / 28);
          if (i % 28) s += utf8(0x11A7 + i % 28);
        }
        break;
      }
      case 2: s += r.pick(kCompat); break;
      case 3: s += word(r, scripts()[0]); break;
      case 4: {  // a base with one to three marks, any order
        s += static_cast<char>('a' + r.below(26));
        const int m = r.range(1, 3);
        for (int i = 0; i < m; ++i) s += r.pick(kMarks);
        break;
      }
      case 5: s += utf8(0x3041 + r.below(0x56)) + (r.chance(0.5) ? "\xE3\x82\x99" : ""); break;  // kana + dakuten
      default: s += ' '; break;
    }
  }
  return s;
}

std::string gen_emoji(Rng& r) {
  static const std::vector<std::string> kSeq = {
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",  // family (ZWJ)
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",                                          // thumbs up, skin tone
      "\xE2\x9D\xA4\xEF\xB8\x8F",                                                  // heart + VS16
      "\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5",                                          // flag JP
      "1\xEF\xB8\x8F\xE2\x83\xA3",                                                 // keycap 1
      "\xF0\x9F\x8F\xB4\xF3\xA0\x81\xA7\xF3\xA0\x81\xA2\xF3\xA0\x81\xB3\xF3\xA0\x81\xA3\xF3\xA0\x81\xB4\xF3\xA0\x81\xBF",
      "\xE2\x98\x95", "\xE2\x9C\xA8", "\xF0\x9F\x99\x82", "\xF0\x9F\x94\xA5"};
  std::string s;
  const int parts = r.range(1, 8);
  for (int k = 0; k < parts; ++k) {
    const std::uint32_t c = r.below(6);
    if (c < 2) s += r.pick(kSeq);
    else if (c < 4) s += utf8(0x1F300 + r.below(0x700));  // pictographs, emoticons, transport, supplemental
    else if (c < 5) s += ' ';
    else s += word(r, scripts()[r.below(3)]);
  }
  return s;
}

std::string gen_whitespace(Rng& r) {
  static const std::vector<char32_t> kSpaces = {' ',    '\t',   '\r',   0x0B,   0x0C,   0xA0,   0x1680, 0x2000,
                                                0x2003, 0x2007, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
                                                0x200B, 0xFEFF, 0x180E, 0x85};
  std::string s;
  const int parts = r.range(1, 10);
  for (int k = 0; k < parts; ++k) {
    if (r.chance(0.6)) {
      const int n = r.range(1, 4);
      for (int i = 0; i < n; ++i) s += utf8(r.pick(kSpaces));
    } else {
      s += word(r, scripts()[r.below(static_cast<std::uint32_t>(scripts().size()))]);
    }
  }
  return s;
}

std::string gen_control(Rng& r) {
  std::string s;
  const int parts = r.range(1, 10);
  for (int k = 0; k < parts; ++k) {
    switch (r.below(6)) {
      case 0: {
        char32_t c = r.below(0x20);
        if (c == '\n') c = 0;
        s += utf8(c);
        break;
      }
      case 1: s += utf8(r.chance(0.3) ? 0x7F : 0x80 + r.below(0x20)); break;  // DEL, C1
      case 2: {
        static const std::vector<char32_t> kFormat = {0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202E, 0x2060,
                                                      0x2064, 0x206A, 0xFFF9, 0xFFFB, 0xFFFC, 0xE0001, 0xFFFE,
                                                      0x00AD, 0x034F, 0x061C, 0x1D173};
        s += utf8(r.pick(kFormat));
        break;
      }
      case 3: s += ' '; break;
      default: s += word(r, scripts()[r.below(static_cast<std::uint32_t>(scripts().size()))]); break;
    }
  }
  return s;
}

std::string gen_random_unicode(Rng& r) {
  std::string s;
  const int n = r.range(1, 30);
  for (int i = 0; i < n; ++i) {
    char32_t c;
    switch (r.below(5)) {
      case 0: c = 0x20 + r.below(0x60); break;
      case 1: c = r.below(0x10000); break;
      case 2: c = 0x10000 + r.below(0x30000); break;
      case 3: c = 0xE0000 + r.below(0x30000); break;
      default: c = 0x80 + r.below(0x3000); break;
    }
    if ((c >= 0xD800 && c <= 0xDFFF) || c == '\n') c = ' ';
    s += utf8(c);
  }
  return s;
}

std::string gen_corpus_like(Rng& r) { return sentence(r); }

struct StringClass {
  const char* name;
  std::function<std::string(Rng&)> gen;
};

const std::vector<StringClass>& classes() {
  static const std::vector<StringClass> kClasses = {
      {"ties", gen_ties},           {"invalid_utf8", gen_invalid_utf8}, {"user_defined", gen_user_defined},
      {"mixed_scripts", gen_mixed_scripts}, {"nfc_nfd_nfkc", gen_normal_forms}, {"emoji", gen_emoji},
      {"whitespace", gen_whitespace}, {"control", gen_control},         {"random_unicode", gen_random_unicode},
      {"corpus_like", gen_corpus_like}};
  return kClasses;
}

constexpr int kStringsPerClass = 2000;

// ---- the oracle ------------------------------------------------------------

std::string find_tool(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    const fs::path p = fs::path(dir.empty() ? "." : dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

std::string tail_of(const fs::path& p) {
  std::ifstream f(p);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

// Runs cmd with stdout+stderr to log; "" on success, else what failed.
std::string run(const std::string& cmd, const fs::path& log) {
  const int rc = std::system((cmd + " >" + shell_quote(log.string()) + " 2>&1").c_str());
  if (rc == 0) return {};
  return cmd + "\n  exited " + std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1) + ":\n" + tail_of(log);
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(f, l)) lines.push_back(l);
  return lines;
}

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t j = s.find(' ', i);
    out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

class TokenizerConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    spm_train_ = find_tool("spm_train");
    spm_encode_ = find_tool("spm_encode");
    if (spm_train_.empty() || spm_encode_.empty()) {
      GTEST_SKIP() << "sentencepiece tools (spm_train, spm_encode) not on PATH: install Debian's `sentencepiece` "
                      "(scripts/install-deps.sh)";
    }
    std::string tmpl = (fs::temp_directory_path() / "wand_tok_conformance_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl << " failed";
    dir_ = tmpl;
  }
  void TearDown() override {
    // WAND_KEEP=1 keeps the corpus, models and spm_encode outputs for a look.
    if (!dir_.empty() && !HasFailure() && !std::getenv("WAND_KEEP")) fs::remove_all(dir_);
    else if (!dir_.empty()) std::printf("[ info ] files kept in %s\n", dir_.c_str());
  }

  std::string spm_train_, spm_encode_;
  fs::path dir_;
};

TEST_F(TokenizerConformance, EqualsSentencepieceOnTrainedUnigramModels) {
  const auto t0 = std::chrono::steady_clock::now();
  // Corpus: 10,000 seeded sentences (~1 MB).
  const fs::path corpus = dir_ / "corpus.txt";
  {
    Rng r(20261207);
    std::ofstream f(corpus, std::ios::binary);
    for (int i = 0; i < 10000; ++i) f << sentence(r) << '\n';
  }
  // Test strings, one file for every model.
  std::vector<std::string> strings;
  std::vector<int> class_of;
  for (std::size_t c = 0; c < classes().size(); ++c) {
    Rng r(1000 + c);
    for (int i = 0; i < kStringsPerClass; ++i) {
      std::string s = classes()[c].gen(r);
      for (char& ch : s) {
        if (ch == '\n') ch = ' ';  // one string per line for spm_encode
      }
      strings.push_back(std::move(s));
      class_of.push_back(static_cast<int>(c));
    }
  }
  const fs::path input = dir_ / "strings.txt";
  {
    std::ofstream f(input, std::ios::binary);
    for (const auto& s : strings) f << s << '\n';
  }

  auto join = [](const std::vector<std::string>& v) {
    std::string o;
    for (const auto& x : v) o += (o.empty() ? "" : ",") + x;
    return o;
  };
  struct ModelRun {
    const char* name;
    std::string flags;
  };
  const std::string common =
      " --model_type=unigram --normalization_rule_name=nmt_nfkc --add_dummy_prefix=true"
      " --remove_extra_whitespaces=true --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1"
      " --num_threads=2 --minloglevel=1 --input=" + shell_quote(corpus.string()) +
      // EM settings that only make training quicker (a few seconds a model on two
      // cores instead of ~10): fewer seed pieces, one EM pass per pruning step,
      // bigger pruning steps. The encoder's behaviour does not depend on them.
      " --seed_sentencepiece_size=30000 --num_sub_iterations=1 --shrinking_factor=0.6";
  const std::vector<ModelRun> models = {
      {"v8k", "--vocab_size=8000"},
      {"v4k_bytes", "--vocab_size=4000 --byte_fallback=true --character_coverage=0.995"},
      {"v3k_user", "--vocab_size=3000 --user_defined_symbols=" + shell_quote(join(kUserSymbols)) +
                       " --control_symbols=" + shell_quote(join(kControlSymbols))},
  };

  int total_diffs = 0;
  for (const ModelRun& m : models) {
    const auto t_model = std::chrono::steady_clock::now();
    const fs::path prefix = dir_ / m.name;
    std::string err = run(spm_train_ + " " + m.flags + common + " --model_prefix=" + shell_quote(prefix.string()),
                          dir_ / (std::string(m.name) + ".train.log"));
    ASSERT_TRUE(err.empty()) << err;
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_model).count();
    const std::string model_path = prefix.string() + ".model";
    const fs::path ids_path = dir_ / (std::string(m.name) + ".ids"), pieces_path = dir_ / (std::string(m.name) + ".pieces");
    for (const auto& [fmt, out] : {std::make_pair("id", ids_path), std::make_pair("piece", pieces_path)}) {
      err = run(spm_encode_ + " --model=" + shell_quote(model_path) + " --output_format=" + fmt + " --input=" +
                    shell_quote(input.string()) + " --output=" + shell_quote(out.string()),
                dir_ / (std::string(m.name) + ".encode.log"));
      ASSERT_TRUE(err.empty()) << err;
    }
    const double encode_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_model).count() - train_s;
    const std::vector<std::string> id_lines = read_lines(ids_path), piece_lines = read_lines(pieces_path);
    ASSERT_EQ(id_lines.size(), strings.size()) << m.name << ": spm_encode wrote " << id_lines.size() << " id lines for "
                                               << strings.size() << " strings";
    ASSERT_EQ(piece_lines.size(), strings.size()) << m.name << ": spm_encode wrote " << piece_lines.size()
                                                  << " piece lines for " << strings.size() << " strings";

    SpmModel model = SpmModel::read(model_path);
    std::size_t n_user = 0, n_control = 0, n_bytes = 0;
    for (const SpmPiece& p : model.pieces) {
      n_user += p.type == SpmPiece::Type::kUserDefined;
      n_control += p.type == SpmPiece::Type::kControl;
      n_bytes += p.type == SpmPiece::Type::kByte;
    }
    const Tokenizer tok = Tokenizer::from_model(model);
    std::printf("[ info ] %s: %lld pieces (%zu user-defined, %zu control, %zu byte), charsmap %zu bytes; "
                "spm_train %.1f s, spm_encode x2 %.1f s\n",
                m.name, static_cast<long long>(tok.vocab_size()), n_user, n_control, n_bytes,
                model.precompiled_charsmap.size(), train_s, encode_s);
    // The training run must have produced what this test means to cover.
    EXPECT_EQ(model.normalizer_name, "nmt_nfkc");
    EXPECT_FALSE(model.precompiled_charsmap.empty());
    if (std::string(m.name) == "v3k_user") {
      EXPECT_EQ(n_user, kUserSymbols.size());
      EXPECT_EQ(n_control, kControlSymbols.size() + 2);  // + <pad>, </s>
    }
    if (std::string(m.name) == "v4k_bytes") {
      EXPECT_EQ(n_bytes, 256u);
    }

    std::vector<int> diffs(classes().size(), 0);
    std::vector<int> unk_or_byte(classes().size(), 0);
    for (std::size_t i = 0; i < strings.size(); ++i) {
      std::vector<int64_t> want_ids;
      for (const std::string& t : split_spaces(id_lines[i])) want_ids.push_back(std::stoll(t));
      const std::vector<std::string> pieces = split_spaces(piece_lines[i]);
      // The normalized text sentencepiece segmented: its pieces in order, byte
      // pieces turned back into their byte (an <unk> piece carries the text it covers).
      std::string want_norm;
      bool pieces_ok = pieces.size() == want_ids.size();
      for (std::size_t k = 0; pieces_ok && k < pieces.size(); ++k) {
        const int64_t id = want_ids[k];
        if (id < 0 || id >= tok.vocab_size()) {
          pieces_ok = false;
          break;
        }
        const SpmPiece& p = model.pieces[static_cast<std::size_t>(id)];
        if (p.type == SpmPiece::Type::kByte) {
          want_norm.push_back(static_cast<char>(std::stoi(p.piece.substr(3, 2), nullptr, 16)));
          ++unk_or_byte[static_cast<std::size_t>(class_of[i])];
        } else {
          want_norm += pieces[k];
          if (p.type == SpmPiece::Type::kUnknown) ++unk_or_byte[static_cast<std::size_t>(class_of[i])];
        }
      }
      ASSERT_TRUE(pieces_ok) << m.name << ": spm_encode's pieces and ids disagree for string " << i << " \""
                             << escaped(strings[i]) << "\": ids [" << id_lines[i] << "], pieces \""
                             << escaped(piece_lines[i]) << "\"";
      const std::vector<int64_t> got_ids = tok.encode_ids(strings[i]);
      const std::string got_norm = tok.normalize(strings[i]);
      if (got_ids != want_ids || got_norm != want_norm) {
        int& d = diffs[static_cast<std::size_t>(class_of[i])];
        if (d < 5) {
          ADD_FAILURE() << m.name << " / " << classes()[static_cast<std::size_t>(class_of[i])].name << " string " << i
                        << " \"" << escaped(strings[i]) << "\"\n  sentencepiece ids [" << ids_text(want_ids)
                        << "]\n  wand          ids [" << ids_text(got_ids) << "]\n  sentencepiece normalized \""
                        << escaped(want_norm) << "\"\n  wand          normalized \"" << escaped(got_norm) << "\"";
        }
        ++d;
      }
    }
    for (std::size_t c = 0; c < classes().size(); ++c) {
      std::printf("[ info ] %s / %-14s %d strings, %d differences (%d unk/byte pieces)\n", m.name, classes()[c].name,
                  kStringsPerClass, diffs[c], unk_or_byte[c]);
      total_diffs += diffs[c];
    }
  }
  EXPECT_EQ(total_diffs, 0);
  std::printf("[ info ] %.1f s (training included)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace
