// clean_text: each implemented rule of the official prompt cleaning, and the
// default negative prompt constant.
#include <gtest/gtest.h>

#include "model/text_clean.h"

using wand::model::clean_text;
using wand::model::kDefaultNegativePrompt;

namespace {
std::size_t code_points(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
std::size_t count(const std::string& s, const std::string& sub) {
  std::size_t n = 0;
  for (std::size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
  return n;
}
}  // namespace

TEST(TextClean, DefaultNegativePromptConstant) {
  const std::string neg = kDefaultNegativePrompt;
  EXPECT_EQ(code_points(neg), 137u);
  EXPECT_EQ(count(neg, "\xEF\xBC\x8C"), 27u);  // U+FF0C
  EXPECT_EQ(neg.rfind("色调艳丽", 0), 0u);
  EXPECT_EQ(neg.substr(neg.size() - std::string("倒着走").size()), "倒着走");
  const std::string cleaned = clean_text(neg);
  EXPECT_EQ(count(cleaned, "\xEF\xBC\x8C"), 0u);
  EXPECT_EQ(count(cleaned, ","), 27u);
  EXPECT_EQ(code_points(cleaned), 137u);
  EXPECT_EQ(cleaned.rfind("色调艳丽,过曝,静态,", 0), 0u);
  EXPECT_NE(cleaned.find("JPEG压缩残留,"), std::string::npos);
}

TEST(TextClean, FullWidthFoldsToAscii) {
  EXPECT_EQ(clean_text("ＡＢＣ１２３！？（ｘ）"), "ABC123!?(x)");
  EXPECT_EQ(clean_text("猫\xE3\x80\x80狗"), "猫 狗");  // U+3000 ideographic space
  EXPECT_EQ(clean_text("\xEF\xBF\xA5" "100"), "\xC2\xA5" "100");  // U+FFE5 -> U+00A5
}

TEST(TextClean, CurlyQuotesStraightened) {
  EXPECT_EQ(clean_text("\xE2\x80\x9Cquoted\xE2\x80\x9D and \xE2\x80\x98single\xE2\x80\x99"), "\"quoted\" and 'single'");
  EXPECT_EQ(clean_text("it\xCA\xBCs"), "it's");  // U+02BC
}

TEST(TextClean, LigaturesExpanded) {
  EXPECT_EQ(clean_text("\xEF\xAC\x81ne \xEF\xAC\x82ow o\xEF\xAC\x83" "ce"), "fine flow office");
  EXPECT_EQ(clean_text("\xC4\xB2sselmeer"), "IJsselmeer");
}

TEST(TextClean, HtmlEntitiesUnescaped) {
  EXPECT_EQ(clean_text("cats &amp; dogs"), "cats & dogs");
  EXPECT_EQ(clean_text("&#65;&#x42;C"), "ABC");
  EXPECT_EQ(clean_text("&amp;lt;b&amp;gt;"), "<b>");          // double escaped: three passes in all
  EXPECT_EQ(clean_text("a &lt; b &amp;amp; c"), "a < b & c");  // no '<' in the input
  // With a literal '<', ftfy leaves entities alone, html.unescape x2 still runs.
  EXPECT_EQ(clean_text("<x> &amp;amp;amp;"), "<x> &amp;");
  EXPECT_EQ(clean_text("AT&T &unknown; &"), "AT&T &unknown; &");
  EXPECT_EQ(clean_text("caf&eacute;&nbsp;au lait"), "caf\xC3\xA9 au lait");  // nbsp is whitespace
}

TEST(TextClean, NfcComposesLatin) {
  EXPECT_EQ(clean_text("cafe\xCC\x81"), "caf\xC3\xA9");                 // e + U+0301
  EXPECT_EQ(clean_text("Pho\xCC\x9B\xCC\x89"), "Ph\xE1\xBB\x9F");       // o + horn + hook above
  EXPECT_EQ(clean_text("n\xCC\x83o"), "\xC3\xB1o");
  EXPECT_EQ(clean_text("q\xCC\x81"), "q\xCC\x81");                      // no precomposed form
}

TEST(TextClean, ControlsRemovedWhitespaceCollapsed) {
  EXPECT_EQ(clean_text("  a\x01" "b\x7F" "c\xEF\xBB\xBF  d \t\n\r\n e  "), "abc d e");
  EXPECT_EQ(clean_text("x\x1B[31mred\x1B[0m y"), "xred y");
  EXPECT_EQ(clean_text("one\xE2\x80\xA8two\xC2\xA0three\xE2\x80\x83" "four"), "one two three four");
  EXPECT_EQ(clean_text(""), "");
  EXPECT_EQ(clean_text(" \t\n "), "");
}

TEST(TextClean, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(clean_text("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(clean_text("\xC3"), "\xEF\xBF\xBD");
}
