# VAE family tests (label model): golden cases, VAE units incl. tiling, video I/O.
wand_add_test(vae_golden_test SOURCES vae_golden_test.cpp LIBS wand_model LABELS model)
wand_add_test(video_test SOURCES video_test.cpp LIBS wand_model LABELS model)
wand_add_test(vae_test SOURCES vae_test.cpp LIBS wand_model LABELS model)
wand_add_test(vae_bf16_test SOURCES vae_bf16_test.cpp LIBS wand_model LABELS model)
wand_add_test(vae_gpu_test SOURCES vae_gpu_test.cpp LIBS wand_model LABELS model gpu)
if(WAND_TORCH_CUDA)
  target_compile_definitions(vae_gpu_test PRIVATE WAND_TEST_TORCH_CUDA=1)
endif()
