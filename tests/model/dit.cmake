# DiT family tests (owner: dit), label model.
wand_add_test(dit_golden_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dit_golden_test.cpp
  LIBS wand_model
  LABELS model)
target_compile_definitions(dit_golden_test PRIVATE WAND_GOLDEN_BIN="$<TARGET_FILE:wand-golden>")
add_dependencies(dit_golden_test wand-golden)
wand_add_test(dit_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dit_test.cpp
  LIBS wand_model
  LABELS model)
wand_add_test(dit_sampler_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dit_sampler_test.cpp
  LIBS wand_model
  LABELS model)
wand_add_test(dit_bf16_parity_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dit_bf16_parity_test.cpp
  LIBS wand_model
  LABELS model gpu)
