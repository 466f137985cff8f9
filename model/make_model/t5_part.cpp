// wand-make-model's umT5 part: <root>/models_t5_umt5-xxl-enc-bf16.pth (bf16,
// random init, streamed) and <root>/google/umt5-xxl/ (tokenizer).
//
// Tiny presets: dim 64, dim_attn 64, 4 heads, ffn 160, 2 layers, 32 buckets,
// vocab = the tokenizer's size. Full-size presets: the release architecture
// (vocab 256384, dim 4096, 64 heads, ffn 10240, 24 layers; 11.4 GB), with the
// same small tokenizer (the real spiece.model cannot be downloaded here; its
// ids stay far below 256384).
// The tokenizer is built by SpmModel::build_unigram, not by sentencepiece's
// trainer: libsentencepiece cannot be loaded next to Debian's LibTorch (see
// model/CMakeLists.txt), and a unigram model is just pieces and scores.
#include "common/error.h"
#include "common/log.h"
#include "model/make_model/parts.h"
#include "model/t5_writer.h"

namespace wand::model::make {

namespace {
bool is_tiny(const std::string& preset) { return preset.rfind("tiny", 0) == 0; }
void check_preset(const std::string& preset) {
  for (const char* p : {"tiny-t2v", "tiny-i2v", "tiny-ti2v", "t2v-A14B", "i2v-A14B", "ti2v-5B"}) {
    if (preset == p) return;
  }
  throw Error(ErrorCode::kBadRequest, "make-model: unknown preset '" + preset + "'");
}
}  // namespace

void write_t5_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t seed) {
  check_preset(preset);
  std::filesystem::create_directories(root);
  const SpmModel tok = tiny_umt5_tokenizer();
  write_umt5_tokenizer_dir(root / "google" / "umt5-xxl", tok);
  T5Config cfg = umt5_xxl_config();
  if (is_tiny(preset)) {
    cfg.vocab = static_cast<int64_t>(tok.pieces.size());
    cfg.dim = t5_dim_for_preset(preset);
    cfg.dim_attn = 64;
    cfg.dim_ffn = 160;
    cfg.num_heads = 4;
    cfg.num_layers = 2;
    cfg.num_buckets = 32;
  }
  write_t5_checkpoint(root / "models_t5_umt5-xxl-enc-bf16.pth", cfg, seed ^ 0x75d7355ull);
}

int t5_dim_for_preset(const std::string& preset) { return is_tiny(preset) ? 64 : 4096; }

}  // namespace wand::model::make
