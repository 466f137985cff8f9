// Placeholder until the umT5 family lands: writes nothing.
#include "common/log.h"
#include "model/make_model/parts.h"

namespace wand::model::make {
void write_t5_part(const std::filesystem::path& root, const std::string& preset, std::uint64_t) {
  wand::log::get("model")->warn("make-model: umT5 part not implemented yet preset={} root={}", preset,
                                root.string());
}
int t5_dim_for_preset(const std::string& preset) { return preset.rfind("tiny", 0) == 0 ? 64 : 4096; }
}  // namespace wand::model::make
