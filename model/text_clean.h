// Prompt cleaning as the official tokenizer wrapper does it before tokenising
// (wan/modules/tokenizers.py, clean='whitespace': ftfy.fix_text, html.unescape
// twice, strip, whitespace runs -> one space, strip), for the subset of ftfy
// that can occur in prompts.
//
//   std::string t = wand::model::clean_text(prompt);    // UTF-8 in, UTF-8 out
//   tokenizer.encode(t);
//
// Implemented (in this order, as ftfy 6 orders its fixes):
//   1. HTML entities unescaped, only when the text has no '<' (ftfy's rule):
//      &amp; &lt; &gt; &quot; &apos; &nbsp; and ~40 common named entities,
//      decimal &#NNN; and hex &#xHH; references (with the semicolon);
//   2. terminal escapes ESC[...letter removed;
//   3. Latin ligatures expanded (U+FB00-FB06, IJ/ij, DZ/LJ/NJ digraphs, 'n);
//   4. width folding: U+FF01-FF5E -> U+0021-007E, U+3000 -> space,
//      U+FFE0-FFE6 -> their NFKC forms (cent, pound, not, macron, broken bar,
//      yen, won); half-width katakana are NOT folded;
//   5. curly quotes straightened: U+02BC, U+2018-201B -> ', U+201C-201F -> ";
//   6. line breaks normalised (CRLF, CR, U+0085, U+2028, U+2029 -> LF);
//   7. control characters removed (U+0000-0008, 000B, 000E-001F, 007F,
//      206A-206F, FEFF, FFF9-FFFC, tag characters E0000-E007F);
//   8. NFC for Latin: a base letter followed by combining marks is composed
//      for every pair in model/text_clean_nfc.h (U+00C0-024F, U+1E00-1EFF),
//      applied left to right (no canonical reordering, no Hangul);
//   9. HTML entities unescaped twice more (html.unescape x2);
//  10. strip, every run of Unicode whitespace -> one ASCII space, strip.
// Not done: ftfy's mojibake repair (fix_encoding) and C1-control decoding.
// Invalid UTF-8 bytes are replaced by U+FFFD. Pure function; any thread.
#pragma once

#include <string>

namespace wand::model {

std::string clean_text(const std::string& text);

// The official default negative prompt (wan/configs/shared_config.py
// sample_neg_prompt): 137 code points, 27 of them full-width commas U+FF0C.
extern const char* const kDefaultNegativePrompt;

}  // namespace wand::model
