// model/cuda/dit_fused_launch.h without the CUDA kernels (CPU LibTorch or no
// nvcc): nothing to launch. fused::available() is false, so WanDit::block never
// gets here; a direct call fails loudly.
#include "common/error.h"
#include "model/cuda/dit_fused_launch.h"

namespace wand::model::fused::detail {

bool kernels_built() { return false; }

void launch(const kernels::RowNormArgs&, int) {
  throw Error(ErrorCode::kInternal, "fused dit kernels: not built (needs a CUDA LibTorch and nvcc)");
}

void launch(const kernels::RmsNormRopeArgs&, int) {
  throw Error(ErrorCode::kInternal, "fused dit kernels: not built (needs a CUDA LibTorch and nvcc)");
}

}  // namespace wand::model::fused::detail
