# DiT family (owner: dit): config, checkpoint directories, RoPE, the DiT, samplers,
# golden handlers (golden/dit_cases.cpp is in the base list), wand-make-model.
list(APPEND WAND_MODEL_SOURCES
  wan_config.cpp
  checkpoint.cpp
  rope.cpp
  dit_block_weights.cpp
  dit.cpp
)
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
