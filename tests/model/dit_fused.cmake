# Fused DiT kernels (owner: kernels), labels model;gpu: skips without a GPU or
# without the kernels (built against a CUDA LibTorch with nvcc present).
wand_add_test(dit_fused_gpu_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dit_fused_gpu_test.cpp
  LIBS wand_model
  LABELS model gpu)
