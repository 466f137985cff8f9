# Checkpoint layouts (owner: formats): the layout detector and the diffusers key map,
# LibTorch-free, in wand_model_facts so the planner reads the layouts the model reads
# (model/formats/model_layout.h, model/formats/diffusers_keys.h).
target_sources(wand_model_facts PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/diffusers_keys.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/model_layout.cpp
)
