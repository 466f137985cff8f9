#include "model/tokenizer_synth.h"

#include <algorithm>
#include <cstdio>
#include <unordered_set>

#include "common/error.h"

namespace wand::model {

namespace {

const std::string kU = "\xE2\x96\x81";  // U+2581

class Rng {  // splitmix64
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint32_t below(std::size_t n) { return static_cast<std::uint32_t>(next() % n); }
  int range(int lo, int hi) { return lo + static_cast<int>(below(static_cast<std::size_t>(hi - lo + 1))); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>((next() >> 40) * 0x1.0p-24); }

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

std::vector<std::string> split(const char* words) {
  std::vector<std::string> out;
  std::string w;
  for (const char* p = words;; ++p) {
    if (*p == ' ' || *p == '\0') {
      if (!w.empty()) out.push_back(w);
      w.clear();
      if (*p == '\0') break;
    } else {
      w.push_back(*p);
    }
  }
  return out;
}

// Word classes of English video prompts.
const char* const kDeterminers = "a the an two three several many one its their his her";
const char* const kAdjectives =
    "young old small large golden white black red blue green yellow fluffy elegant ancient futuristic quiet busy "
    "snowy rainy sunny misty foggy dark bright colorful vibrant serene dramatic cinematic realistic detailed soft "
    "warm cold gentle majestic tiny giant wooden metallic glowing shimmering crystal clear dusty rusty shiny "
    "beautiful happy curious playful calm wild lonely crowded empty narrow wide tall";
const char* const kNouns =
    "cat dog woman man girl boy child astronaut robot panda horse dancer fisherman chef musician bird eagle fox wolf "
    "tiger lion dragon butterfly car train boat ship bicycle motorcycle airplane city street forest mountain river "
    "lake ocean beach desert garden park market kitchen room window door table chair flower tree leaves grass sky "
    "clouds sun moon stars rain snow waves light shadow smoke fire water reflection face hands eyes hair dress coat "
    "hat umbrella lantern camera background foreground scene view shot frame moment sunset sunrise night morning";
const char* const kVerbs =
    "walks runs sits stands jumps dances looks smiles turns flies swims drives rides plays rests waits moves glides "
    "floats falls rises spins climbs crosses explores holds carries watches reaches slowly gracefully quickly gently";
const char* const kPrepositions = "in on under over through across beside near behind toward along around above";
const char* const kStyles =
    "cinematic lighting, close-up shot, wide angle, slow motion, 4K, high quality, soft colors, realistic style, "
    "anime style, shallow depth of field, bokeh, golden hour, volumetric light, film grain, tracking shot, aerial "
    "view, handheld camera, dolly zoom, high contrast, pastel palette, hyperrealistic, photorealistic, 35mm film";

const char* const kZhWords =
    "一只 猫 狗 老人 年轻 女子 孩子 红色 汽车 小鸟 宇航员 熊猫 机器人 慢慢 走过 跑过 坐在 跳过 跳舞 看着 玩耍 飞过 阳光 明媚 的 "
    "公园 雪山 夜晚 繁忙 城市 街道 安静 森林 日落 海滩 温暖 厨房 下雨 市场 花园 电影感 灯光 特写 镜头 广角 慢动作 高质量 柔和 色彩 "
    "画面 背景 前景 天空 云朵 月亮 星星 河流 湖泊 大海 沙漠 山峰 树木 花朵 草地 微风 雨水 雪花 光影 倒影 烟雾 火焰 人物 表情 眼睛 "
    "头发 衣服 帽子 雨伞 灯笼 细节 清晰 真实 风格 动漫 写实 高清 色调 艳丽 过曝 静态 模糊 字幕 作品 画作 静止 整体 发灰 最差 质量 "
    "低质量 压缩 残留 丑陋 残缺 多余 手指 手部 脸部 畸形 毁容 肢体 融合 杂乱 三条腿 很多 倒着走 在 和 与 中 上 下 里 着 了";

std::string pick(Rng& r, const std::vector<std::string>& v) { return v[r.below(v.size())]; }

std::string english_prompt(Rng& r) {
  static const auto det = split(kDeterminers), adj = split(kAdjectives), noun = split(kNouns), verb = split(kVerbs),
                    prep = split(kPrepositions), style = split(kStyles);
  std::string s;
  const int target = r.range(60, 90);
  int words = 0;
  bool sentence_start = true;
  while (words < target) {
    std::string clause = pick(r, det) + " " + pick(r, adj) + " " + pick(r, noun) + " " + pick(r, verb) + " " +
                         pick(r, prep) + " " + pick(r, det) + " " + pick(r, adj) + " " + pick(r, noun);
    if (sentence_start) clause[0] = static_cast<char>(clause[0] - 32);
    words += 8;
    s += (s.empty() ? "" : " ") + clause;
    if (r.below(3) == 0) {
      s += ", " + pick(r, style);
      words += 2;
    }
    sentence_start = r.below(2) == 0;
    s += sentence_start ? "." : ",";
  }
  return s;
}

std::string chinese_prompt(Rng& r) {
  static const auto zh = split(kZhWords);
  std::string s;
  const int target = r.range(30, 60);
  for (int i = 0; i < target; ++i) {
    s += pick(r, zh);
    if (r.below(6) == 0) s += r.below(4) == 0 ? "。" : "，";
  }
  return s + "。";
}

// Code point ranges the filler pieces are drawn from (the scripts umT5 covers).
struct Range {
  char32_t lo, hi;
};
const Range kFillerScripts[] = {
    {0x61, 0x7A},     {0xE0, 0xFF},     {0x100, 0x17F},   {0x430, 0x44F},   {0x3B1, 0x3C9},  {0x5D0, 0x5EA},
    {0x627, 0x64A},   {0x915, 0x939},   {0x995, 0x9B9},   {0xE01, 0xE2E},   {0x10D0, 0x10F0}, {0x3041, 0x3093},
    {0x30A1, 0x30F6}, {0x4E00, 0x9FA5}, {0xAC00, 0xD7A3}, {0x0B95, 0x0BB9}, {0x0C95, 0x0CB9}, {0x1780, 0x17B3}};

}  // namespace

std::vector<std::string> typical_prompts(int n, std::uint64_t seed) {
  Rng r(seed * 7919 + 17);
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out.push_back(r.below(5) == 0 ? chinese_prompt(r) : english_prompt(r));
  return out;
}

SpmModel synthetic_umt5_model(int vocab_size, std::uint64_t seed) {
  const int specials = 3 + 256;
  if (vocab_size < specials + 1000) {
    throw Error(ErrorCode::kBadRequest, "synthetic_umt5_model: vocab_size " + std::to_string(vocab_size) +
                                            " is below the 1,259 pieces it needs");
  }
  Rng r(seed);
  SpmModel m;
  m.unk_id = 2;
  m.bos_id = -1;
  m.eos_id = 1;
  m.pad_id = 0;
  m.byte_fallback = true;
  m.normalizer_name = "identity";
  m.pieces.push_back({"<pad>", 0.0f, SpmPiece::Type::kControl});
  m.pieces.push_back({"</s>", 0.0f, SpmPiece::Type::kControl});
  m.pieces.push_back({"<unk>", 0.0f, SpmPiece::Type::kUnknown});
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    m.pieces.push_back({name, 0.0f, SpmPiece::Type::kByte});
  }
  const std::size_t room = static_cast<std::size_t>(vocab_size - specials);
  std::unordered_set<std::string> seen;
  std::vector<SpmPiece> normal;
  normal.reserve(room);
  auto add = [&](const std::string& p, float lo, float hi) {
    if (normal.size() < room && !p.empty() && seen.insert(p).second) {
      normal.push_back({p, r.uniform(lo, hi), SpmPiece::Type::kNormal});
    }
  };
  // Every printable ASCII character and the space symbol, alone and after it.
  add(kU, -3.0f, -2.5f);
  for (char c = 0x21; c < 0x7F; ++c) {
    add(std::string(1, c), -9.0f, -7.0f);
    add(kU + std::string(1, c), -10.0f, -8.0f);
  }
  // English prompt words: "▁word" (likely), "▁Word", "word", and the prefixes and suffixes a real vocabulary has.
  for (const char* list : {kDeterminers, kAdjectives, kNouns, kVerbs, kPrepositions, kStyles}) {
    for (std::string w : split(list)) {
      while (!w.empty() && (w.back() == ',' || w.back() == '.')) w.pop_back();
      add(kU + w, -9.0f, -6.0f);
      add(w, -11.0f, -9.0f);
      std::string cap = w;
      if (cap[0] >= 'a' && cap[0] <= 'z') cap[0] = static_cast<char>(cap[0] - 32);
      add(kU + cap, -11.0f, -9.0f);
      for (std::size_t k = 1; k < w.size(); ++k) {
        add(kU + w.substr(0, k), -13.0f, -10.0f);
        add(w.substr(k), -13.0f, -10.0f);
      }
    }
  }
  // Chinese: every character of the prompt words, and the words.
  for (const std::string& w : split(kZhWords)) {
    for (std::size_t k = 0; k < w.size(); k += 3) add(w.substr(k, 3), -10.0f, -8.0f);
    add(w, -11.0f, -8.0f);
    add(kU + w, -12.0f, -9.0f);
  }
  add("\xEF\xBC\x8C", -8.0f, -7.0f);  // ，
  add("\xE3\x80\x82", -8.0f, -7.0f);  // 。
  // Filler up to vocab_size: pseudo-words of 1-8 characters in many scripts,
  // each with its prefixes, half of them after U+2581.
  while (normal.size() < room) {
    const Range& sc = kFillerScripts[r.below(sizeof kFillerScripts / sizeof kFillerScripts[0])];
    std::string w = r.below(2) == 0 ? kU : std::string();
    const int len = r.range(1, 8);
    for (int k = 0; k < len; ++k) {
      w += utf8(sc.lo + r.below(static_cast<std::size_t>(sc.hi - sc.lo + 1)));
      add(w, -20.0f, -12.0f);
    }
  }
  // sentencepiece orders normal pieces by descending score.
  std::stable_sort(normal.begin(), normal.end(), [](const SpmPiece& a, const SpmPiece& b) { return a.score > b.score; });
  m.pieces.insert(m.pieces.end(), normal.begin(), normal.end());
  return m;
}

}  // namespace wand::model
