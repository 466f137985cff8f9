#include "model/generator_text.h"

#include <memory>

#include "common/error.h"
#include "common/log.h"
#include "model/formats/model_layout.h"
#include "model/formats/part_sources.h"
#include "model/t5_encoder.h"
#include "model/text_clean.h"
#include "model/tokenizer.h"

namespace wand::model {

TextEncodeFn make_umt5_text_encoder(const std::filesystem::path& dir, at::Device device, RunDtype run) {
  struct Loaded {
    std::unique_ptr<Tokenizer> tok;
    std::unique_ptr<T5Encoder> enc;
  };
  auto loaded = std::make_shared<Loaded>();
  return [loaded, dir, device, run](const std::string& text) -> at::Tensor {
    if (!loaded->enc) {
      // The release .pth or a diffusers text_encoder/ + tokenizer/ (Note [Diffusers parts]).
      const formats::ModelLayout layout = formats::detect_model_layout(dir);
      const std::unique_ptr<TensorSource> src = open_part(layout.text_encoder());
      loaded->tok = std::make_unique<Tokenizer>(Tokenizer::load(layout.tokenizer_dir().string()));
      loaded->enc = std::make_unique<T5Encoder>(T5Encoder::load(*src, run, device));
      log::get("model")->info("umt5 loaded layers={} dim={} device={}", loaded->enc->num_layers(),
                              loaded->enc->config().dim, device.str());
    }
    TokenizedText tt = loaded->tok->encode(clean_text(text));
    const int64_t n = static_cast<int64_t>(tt.ids.size());
    at::Tensor ids = at::tensor(tt.ids, at::kLong).view({1, n}).to(device);
    at::Tensor mask = at::tensor(tt.mask, at::kLong).view({1, n}).to(device);
    std::vector<at::Tensor> out = loaded->enc->encode(ids, mask);
    WAND_ASSERT(out.size() == 1, "text encoder: expected one output");
    return out[0];
  };
}

std::string default_negative_prompt() { return kDefaultNegativePrompt; }

}  // namespace wand::model
