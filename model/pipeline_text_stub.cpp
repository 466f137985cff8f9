// Built instead of pipeline_text.cpp when the umT5 family (tokenizer, text
// cleaning) is not part of wand_model: generators then need an injected
// GeneratorOptions::text_encoder.
#include "common/error.h"
#include "model/pipeline_text.h"

namespace wand::model {

TextEncodeFn make_umt5_text_encoder(const std::filesystem::path& dir, at::Device, RunDtype) {
  return [dir](const std::string&) -> at::Tensor {
    throw Error(ErrorCode::kConfig, "text encoder: this build has no umT5 tokenizer (model dir " + dir.string() +
                                        "); pass GeneratorOptions::text_encoder");
  };
}

std::string default_negative_prompt() {
  throw Error(ErrorCode::kConfig, "text encoder: this build has no default negative prompt (umT5 family missing)");
}

}  // namespace wand::model
