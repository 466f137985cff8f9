// Internal to model/cuda: the one CUDA-dependent step of model/cuda/dit_fused.cpp,
// launching a kernel on the current CUDA stream of a device. Defined by
// dit_fused_cuda.cpp (CUDA LibTorch + nvcc) or dit_fused_nocuda.cpp (throws).
//
//   kernels::RowNormArgs a = ...;          // pointers from at::Tensor::data_ptr()
//   fused::detail::launch(a, x.get_device());
// Any thread.
#pragma once

#include "model/cuda/dit_kernels.h"

namespace wand::model::fused::detail {

bool kernels_built();
// Throw wand::Error(kCuda) naming the kernel and the CUDA error when the launch fails.
void launch(const kernels::RowNormArgs& a, int device);
void launch(const kernels::RmsNormRopeArgs& a, int device);

}  // namespace wand::model::fused::detail
