# LoRA tests (owner: lora), label model: key layouts, merge, jobs with LoRAs (tiny, CPU fp32).
wand_add_test(lora_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/lora_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(lora_test)
