# Checkpoint layouts (owner: formats): the layout detector and the key maps, LibTorch-free,
# in wand_model_facts so the planner reads the layouts the model reads
# (model/formats/model_layout.h, diffusers_keys.h, diffusers_vae_keys.h, transformers_umt5_keys.h);
# the renaming TensorSource and the part opener (LibTorch) in wand_model.
target_sources(wand_model_facts PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/diffusers_keys.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/diffusers_vae_keys.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/lora_keys.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/model_layout.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/single_file.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/formats/transformers_umt5_keys.cpp
)
list(APPEND WAND_MODEL_SOURCES formats/renamed_source.cpp formats/part_sources.cpp)
