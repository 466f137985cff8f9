// WAND_CUDA_CHECK(expr): the one check macro of the CUDA code. Throws
// wand::Error(kCuda) with the expression, the CUDA error string, file and line.
//
//   WAND_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream));
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "common/error.h"

namespace wand::memory::cuda {

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* expr, const char* file, int line) {
  throw Error(ErrorCode::kCuda, std::string("cuda error: ") + expr + " failed: " + cudaGetErrorName(err) +
                                    " (" + cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace wand::memory::cuda

#define WAND_CUDA_CHECK(expr)                                                       \
  do {                                                                              \
    cudaError_t wand_cuda_err_ = (expr);                                            \
    if (wand_cuda_err_ != cudaSuccess) {                                            \
      (void)cudaGetLastError(); /* clear the sticky-free error state */             \
      ::wand::memory::cuda::cuda_fail(wand_cuda_err_, #expr, __FILE__, __LINE__);   \
    }                                                                               \
  } while (0)
