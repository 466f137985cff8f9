// Writes umT5 checkpoints and tokenizer folders in the release layout, with
// random weights (wand-make-model's t5 part; tests).
//
//   T5Config cfg = umt5_xxl_config();                       // or tiny dims
//   write_t5_checkpoint(root / "models_t5_umt5-xxl-enc-bf16.pth", cfg, seed);
//   write_umt5_tokenizer_dir(root / "google/umt5-xxl");      // spiece.model + json
//
// The checkpoint is streamed tensor by tensor (and large tensors in row
// chunks) through PthWriter, in bf16 and in T5Encoder.state_dict() order, so
// the 11.4 GB full-size file never sits in memory. Random init as the golden
// references (shared/golden/README.md): token embedding N(0, 1),
// q ~ N(0, 1/(dim*head_dim)), k / v / ffn ~ N(0, 1/fan_in), o ~ N(0, 1/dim_attn),
// relative-position tables N(0, 0.25), norm weights 1 + N(0, 0.01).
// Deterministic for a seed. Single-threaded; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/t5_encoder.h"
#include "model/tokenizer_spm.h"

namespace wand::model {

// The release architecture: vocab 256384, dim 4096, 64 heads, ffn 10240, 24 layers.
T5Config umt5_xxl_config();

// The state-dict keys, in order, with their shapes.
std::vector<std::pair<std::string, std::vector<int64_t>>> t5_checkpoint_layout(const T5Config& cfg);

void write_t5_checkpoint(const std::filesystem::path& path, const T5Config& cfg, std::uint64_t seed);

// The tokenizer wand-make-model ships (a real umT5 spiece.model cannot be
// downloaded here): a small unigram model over an embedded English + Chinese
// prompt corpus (~400 sentences), pad 0, </s> 1, <unk> 2, no BOS.
SpmModel tiny_umt5_tokenizer(int vocab_size = 384);
// The corpus it is built from (tests check it tokenizes without <unk>).
std::vector<std::string> tiny_tokenizer_corpus();
// Writes spiece.model, tokenizer_config.json and special_tokens_map.json.
void write_umt5_tokenizer_dir(const std::filesystem::path& dir, const SpmModel& model);

}  // namespace wand::model
