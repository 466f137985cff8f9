# VAE family (owner: vae): both Wan video VAEs, budgeted tiled decode, video/image I/O.
list(APPEND WAND_MODEL_SOURCES
  vae_config.cpp
  vae_tiling.cpp
  vae.cpp
  video.cpp
  video_frames.cpp
)
