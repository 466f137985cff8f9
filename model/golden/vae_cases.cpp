// Placeholder until the family is ported: every handler reports "not supported".
#include "common/error.h"
#include "model/golden/golden.h"

namespace wand::model::golden {
Outputs run_vae(const Case& c) {
  throw Error(ErrorCode::kNotFound, "golden case " + c.spec.value("case", std::string()) + " is not supported yet");
}
}  // namespace wand::model::golden
