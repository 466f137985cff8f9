#include "model/text_clean.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

#include "model/text_clean_nfc.h"

namespace wand::model {

const char* const kDefaultNegativePrompt =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

namespace {

using U32 = std::u32string;

U32 decode(const std::string& s) {
  U32 out;
  out.reserve(s.size());
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    std::size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c >> 5) == 0x6) {
      cp = c & 0x1F;
      len = 2;
    } else if ((c >> 4) == 0xE) {
      cp = c & 0x0F;
      len = 3;
    } else if ((c >> 3) == 0x1E) {
      cp = c & 0x07;
      len = 4;
    } else {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    bool ok = i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) ok = false;
      else cp = (cp << 6) | (cc & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (!ok || overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string encode(const U32& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

const std::unordered_map<std::string, char32_t>& entities() {
  static const std::unordered_map<std::string, char32_t> kMap = {
      {"amp", '&'},       {"lt", '<'},         {"gt", '>'},         {"quot", '"'},      {"apos", '\''},
      {"nbsp", 0xA0},     {"hellip", 0x2026},  {"mdash", 0x2014},   {"ndash", 0x2013},  {"lsquo", 0x2018},
      {"rsquo", 0x2019},  {"ldquo", 0x201C},   {"rdquo", 0x201D},   {"sbquo", 0x201A},  {"bdquo", 0x201E},
      {"laquo", 0xAB},    {"raquo", 0xBB},     {"copy", 0xA9},      {"reg", 0xAE},      {"trade", 0x2122},
      {"middot", 0xB7},   {"bull", 0x2022},    {"deg", 0xB0},       {"plusmn", 0xB1},   {"times", 0xD7},
      {"divide", 0xF7},   {"euro", 0x20AC},    {"pound", 0xA3},     {"yen", 0xA5},      {"cent", 0xA2},
      {"sect", 0xA7},     {"para", 0xB6},      {"micro", 0xB5},     {"frac12", 0xBD},   {"frac14", 0xBC},
      {"frac34", 0xBE},   {"sup2", 0xB2},      {"sup3", 0xB3},      {"iexcl", 0xA1},    {"iquest", 0xBF},
      {"shy", 0xAD},      {"eacute", 0xE9},    {"egrave", 0xE8},    {"agrave", 0xE0},   {"aacute", 0xE1},
      {"ouml", 0xF6},     {"uuml", 0xFC},      {"auml", 0xE4},      {"szlig", 0xDF},    {"ntilde", 0xF1},
      {"ccedil", 0xE7},   {"Eacute", 0xC9},    {"Ouml", 0xD6},      {"Uuml", 0xDC},     {"Auml", 0xC4},
  };
  return kMap;
}

// &name; &#NNN; &#xHH; -> the character (html.unescape for these forms).
U32 unescape_html(const U32& s) {
  U32 out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    std::size_t semi = i + 1;
    while (semi < s.size() && semi - i <= 32 && s[semi] != ';' && s[semi] != '&' && s[semi] < 0x80 &&
           s[semi] != ' ') {
      ++semi;
    }
    if (semi >= s.size() || s[semi] != ';' || semi == i + 1) {
      out.push_back('&');
      continue;
    }
    std::string body;
    for (std::size_t k = i + 1; k < semi; ++k) body.push_back(static_cast<char>(s[k]));
    char32_t cp = 0;
    bool found = false;
    if (body[0] == '#') {
      const bool hex = body.size() > 1 && (body[1] == 'x' || body[1] == 'X');
      const std::string digits = body.substr(hex ? 2 : 1);
      if (!digits.empty() && digits.size() <= 8 &&
          std::all_of(digits.begin(), digits.end(), [&](char ch) { return hex ? std::isxdigit(static_cast<unsigned char>(ch)) != 0 : std::isdigit(static_cast<unsigned char>(ch)) != 0; })) {
        const unsigned long v = std::stoul(digits, nullptr, hex ? 16 : 10);
        cp = (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) ? 0xFFFD : static_cast<char32_t>(v);
        found = true;
      }
    } else {
      auto it = entities().find(body);
      if (it != entities().end()) {
        cp = it->second;
        found = true;
      }
    }
    if (!found) {
      out.push_back('&');
      continue;
    }
    out.push_back(cp);
    i = semi;
  }
  return out;
}

U32 remove_terminal_escapes(const U32& s) {
  U32 out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == 0x1B && i + 1 < s.size() && s[i + 1] == '[') {
      std::size_t k = i + 2;
      while (k < s.size() && ((s[k] >= '0' && s[k] <= '9') || s[k] == ';')) ++k;
      if (k < s.size() && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z'))) {
        i = k;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

const char* ligature(char32_t c) {
  switch (c) {
    case 0x0132: return "IJ";
    case 0x0133: return "ij";
    case 0x0149: return "\xCA\xBCn";  // U+02BC n
    case 0x01C4: return "D\xC5\xBD";  // DŽ
    case 0x01C5: return "D\xC5\xBE";  // Dž
    case 0x01C6: return "d\xC5\xBE";  // dž
    case 0x01C7: return "LJ";
    case 0x01C8: return "Lj";
    case 0x01C9: return "lj";
    case 0x01CA: return "NJ";
    case 0x01CB: return "Nj";
    case 0x01CC: return "nj";
    case 0x01F1: return "DZ";
    case 0x01F2: return "Dz";
    case 0x01F3: return "dz";
    case 0xFB00: return "ff";
    case 0xFB01: return "fi";
    case 0xFB02: return "fl";
    case 0xFB03: return "ffi";
    case 0xFB04: return "ffl";
    case 0xFB05: return "\xC5\xBFt";  // ſt
    case 0xFB06: return "st";
    default: return nullptr;
  }
}

char32_t fold_width(char32_t c) {
  if (c >= 0xFF01 && c <= 0xFF5E) return c - 0xFF01 + 0x21;
  if (c == 0x3000) return ' ';
  switch (c) {
    case 0xFFE0: return 0xA2;
    case 0xFFE1: return 0xA3;
    case 0xFFE2: return 0xAC;
    case 0xFFE3: return 0xAF;
    case 0xFFE4: return 0xA6;
    case 0xFFE5: return 0xA5;
    case 0xFFE6: return 0x20A9;
    default: return c;
  }
}

bool is_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC) || (c >= 0xE0000 && c <= 0xE007F);
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

char32_t compose(char32_t base, char32_t mark) {
  const auto* b = std::begin(detail::kNfcPairs);
  const auto* e = std::end(detail::kNfcPairs);
  const auto* it = std::lower_bound(b, e, std::make_pair(base, mark), [](const detail::NfcPair& p, const std::pair<char32_t, char32_t>& k) {
    return p.base != k.first ? p.base < k.first : p.mark < k.second;
  });
  if (it != e && it->base == base && it->mark == mark) return it->composed;
  return 0;
}

U32 ftfy_subset(const U32& in) {
  bool has_lt = std::find(in.begin(), in.end(), U'<') != in.end();
  U32 s = has_lt ? in : unescape_html(in);
  s = remove_terminal_escapes(s);
  U32 t;
  t.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (const char* lig = ligature(c)) {
      const U32 l = decode(lig);
      t += l;
      continue;
    }
    c = fold_width(c);
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    if (c >= 0x201C && c <= 0x201F) c = '"';
    if (c == '\r') {
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
      c = '\n';
    }
    if (c == 0x85 || c == 0x2028 || c == 0x2029) c = '\n';
    if (is_control(c)) continue;
    if (!t.empty() && c >= 0x300 && c <= 0x36F) {
      if (char32_t k = compose(t.back(), c)) {
        t.back() = k;
        continue;
      }
    }
    t.push_back(c);
  }
  return t;
}

}  // namespace

std::string clean_text(const std::string& text) {
  U32 s = ftfy_subset(decode(text));
  s = unescape_html(unescape_html(s));
  U32 out;
  out.reserve(s.size());
  bool pending_space = false;
  for (char32_t c : s) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return encode(out);
}

}  // namespace wand::model
