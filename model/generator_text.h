// The text side of the Wan generator: the umT5 encoder + tokenizer + prompt
// cleaning of a model directory as one TextEncodeFn (reference §5.5-5.6), and
// the official default negative prompt.
//
//   TextEncodeFn enc = make_umt5_text_encoder(dir, at::kCPU, RunDtype::kFloat32);
//   at::Tensor ctx = enc("a cat surfing");   // [L_txt, 4096], EOS included, trimmed
//   std::string neg = default_negative_prompt();
//
// The encoder reads <dir>/models_t5_umt5-xxl-enc-bf16.pth and
// <dir>/google/umt5-xxl/spiece.model once, on the first call.
// The returned function is not thread-safe (one generator thread).
#pragma once

#include <filesystem>
#include <string>

#include "model/generator.h"

namespace wand::model {

constexpr const char* kT5CheckpointName = "models_t5_umt5-xxl-enc-bf16.pth";
constexpr const char* kTokenizerDirName = "google/umt5-xxl";

TextEncodeFn make_umt5_text_encoder(const std::filesystem::path& dir, at::Device device, RunDtype run);
// wan/configs/shared_config.py sample_neg_prompt (used when the negative prompt is empty).
std::string default_negative_prompt();

}  // namespace wand::model
