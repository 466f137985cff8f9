// model/cuda/dit_fused_launch.h with the CUDA kernels: the current LibTorch CUDA
// stream of the tensors' device, the launch, its error. Compiled only against a
// CUDA LibTorch with nvcc present (WAND_TORCH_CUDA and WAND_HAVE_CUDA).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <string>

#include "common/error.h"
#include "model/cuda/dit_fused_launch.h"

namespace wand::model::fused::detail {

namespace {

void check(int err, const char* what) {
  if (err != 0) {
    throw Error(ErrorCode::kCuda, std::string("fused dit kernel ") + what + ": " + kernels::error_string(err) +
                                      " (cuda error " + std::to_string(err) + ")");
  }
}

}  // namespace

bool kernels_built() { return true; }

// Kernels launch on the calling thread's current device: make it the tensors' one.
void launch(const kernels::RowNormArgs& a, int device) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
  check(kernels::launch_row_norm(a, stream), "row_norm");
}

void launch(const kernels::RmsNormRopeArgs& a, int device) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
  check(kernels::launch_rms_norm_rope(a, stream), "rms_norm_rope");
}

}  // namespace wand::model::fused::detail
