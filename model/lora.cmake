# LoRAs of the DiT experts (owner: lora): the loader and the per-block merge (model/lora.h);
# the key map is LibTorch-free, in formats.cmake (model/formats/lora_keys.h).
list(APPEND WAND_MODEL_SOURCES lora.cpp)
# wand-lora-merge: a block's merged weights for comparisons with other loaders (a test tool,
# never installed; bench/peers/lora_merge_diffusers.py).
add_executable(wand-lora-merge ${CMAKE_CURRENT_SOURCE_DIR}/tools/wand_lora_merge.cpp)
target_link_libraries(wand-lora-merge PRIVATE wand_model)
