# fp8_e4m3fn weights (owner: fp8), label model: the codec against the format's definition,
# quantization error bounds, fp8_scaled safetensors read straight (wand-make-model --dtype
# fp8), bad fp8 input, and one tiny expert forward / a tiny video against bf16.
wand_add_test(fp8_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fp8_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(fp8_test)
