// Placeholder until the VAE family lands: writes nothing.
#include "common/log.h"
#include "model/make_model/parts.h"

namespace wand::model::make {
void write_vae_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t) {
  wand::log::get("model")->warn("make-model: VAE part not implemented yet preset={} root={}", preset,
                                root.string());
}
}  // namespace wand::model::make
