# DiT family (owner: dit): config, checkpoint directories, RoPE, the DiT, samplers,
# golden handlers (golden/dit_cases.cpp is in the base list), wand-make-model.
list(APPEND WAND_MODEL_SOURCES
  checkpoint.cpp
  rope.cpp
  dit_block_weights.cpp
  dit.cpp
)
# Fused elementwise kernels of the block (owner: kernels): the at::Tensor layer
# always; the launches only with a CUDA LibTorch and nvcc (model/cuda/CMakeLists.txt).
list(APPEND WAND_MODEL_SOURCES cuda/dit_fused.cpp)
if(WAND_HAVE_CUDA AND WAND_TORCH_CUDA)
  list(APPEND WAND_MODEL_SOURCES cuda/dit_fused_cuda.cpp)
else()
  list(APPEND WAND_MODEL_SOURCES cuda/dit_fused_nocuda.cpp)
endif()
list(APPEND WAND_MODEL_SOURCES
  sampler_schedule.cpp
  sampler.cpp
)
list(APPEND WAND_MODEL_SOURCES
  make_model/make_model.cpp
)
# wand-make-model: writes a model directory in the release layout with random weights.
add_executable(wand-make-model ${CMAKE_CURRENT_SOURCE_DIR}/tools/make_model_main.cpp)
target_link_libraries(wand-make-model PRIVATE wand_model)
install(TARGETS wand-make-model RUNTIME DESTINATION bin)
