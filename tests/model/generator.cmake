# Pipeline tests (owner: pipe), label model. tiny_model.cpp writes tiny
# model directories; tests/scheduler/wan reuses it through this library.
add_library(wand_generator_test_support STATIC ${CMAKE_CURRENT_SOURCE_DIR}/tiny_model.cpp)
target_include_directories(wand_generator_test_support PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(wand_generator_test_support PUBLIC wand_model)
wand_torch_pch(wand_generator_test_support)
wand_add_test(generator_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/generator_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(generator_test)
# On CUDA (skips without a GPU).
wand_add_test(generator_gpu_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/generator_gpu_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model gpu
  TIMEOUT 300)
wand_torch_pch(generator_gpu_test)
# Same seed, same latents / frames / mp4 bytes, four runs in one process (owner: determinism).
wand_add_test(determinism_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/determinism_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(determinism_test)
# Few-step jobs (issue 18 item 3): guidance 1, the Euler sampler, the expert switch at 4 / 8 steps.
wand_add_test(fewstep_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fewstep_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(fewstep_test)
