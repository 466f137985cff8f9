# Checkpoint layout tests (owner: formats), label model: the diffusers key map and layout
# detector, and tiny pipelines in the diffusers layout against the release layout.
wand_add_test(formats_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/formats_test.cpp
  LIBS wand_generator_test_support wand_model
  LABELS model
  TIMEOUT 300)
wand_torch_pch(formats_test)
