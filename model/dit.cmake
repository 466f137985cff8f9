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
