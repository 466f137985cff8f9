# Pipeline tests (owner: pipe), label model. pipeline_tiny_model.cpp writes tiny
# model directories; tests/scheduler/wan reuses it through this library.
add_library(wand_pipeline_test_support STATIC ${CMAKE_CURRENT_SOURCE_DIR}/pipeline_tiny_model.cpp)
target_include_directories(wand_pipeline_test_support PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(wand_pipeline_test_support PUBLIC wand_model)
wand_torch_pch(wand_pipeline_test_support)
wand_add_test(pipeline_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/pipeline_test.cpp
  LIBS wand_pipeline_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(pipeline_test)
# On CUDA (skips without a GPU).
wand_add_test(pipeline_gpu_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/pipeline_gpu_test.cpp
  LIBS wand_pipeline_test_support wand_model
  LABELS model gpu
  TIMEOUT 300)
wand_torch_pch(pipeline_gpu_test)
# Same seed, same latents / frames / mp4 bytes, four runs in one process (owner: determinism).
wand_add_test(determinism_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/determinism_test.cpp
  LIBS wand_pipeline_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(determinism_test)
# Few-step jobs (issue 18 item 3): guidance 1, the Euler sampler, the expert switch at 4 / 8 steps.
wand_add_test(fewstep_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fewstep_test.cpp
  LIBS wand_pipeline_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(fewstep_test)
