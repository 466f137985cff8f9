// A umT5-sized synthetic tokenizer model and typical Wan prompts, for the
// tokenizer benchmark (bench/tokenizer) and its speed guard in the tests. No
// real spiece.model is needed: the vocabulary has umT5's size and shape
// (<pad> 0, </s> 1, <unk> 2, 256 byte pieces, then normal pieces by descending
// score), English prompt words and their pieces, the Han characters and words
// of Chinese prompts, and multilingual filler pieces with shared prefixes up to
// 256,384 pieces, so the trie is as wide and deep as the real one's.
//
//   SpmModel m = synthetic_umt5_model();              // 256,384 pieces, identity normalizer
//   std::vector<std::string> p = typical_prompts(1000);
//   Tokenizer::from_model(m).encode_ids(p[0]);        // ~100 pieces
//
// Deterministic for the same arguments. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer_spm.h"

namespace wand::model {

constexpr int kUmt5VocabSize = 256384;

SpmModel synthetic_umt5_model(int vocab_size = kUmt5VocabSize, std::uint64_t seed = 1);

// Prompts like the ones Wan2.2 is given: four in five English (60-90 words of
// subject, action, place, camera and style), one in five Chinese.
std::vector<std::string> typical_prompts(int n, std::uint64_t seed = 1);

}  // namespace wand::model
