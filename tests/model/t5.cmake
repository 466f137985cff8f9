# umT5 family tests (label model; the CUDA parity test also carries gpu and skips without one).
wand_add_test(pth_test SOURCES pth_test.cpp LIBS wand_model LABELS model)
wand_add_test(t5_golden_test SOURCES t5_golden_test.cpp LIBS wand_model LABELS model)
wand_add_test(t5_gpu_test SOURCES t5_gpu_test.cpp LIBS wand_model LABELS model gpu)
wand_add_test(text_clean_test SOURCES text_clean_test.cpp LIBS wand_model LABELS model)
wand_add_test(tokenizer_test SOURCES tokenizer_test.cpp LIBS wand_model LABELS model)
wand_add_test(t5_make_test SOURCES t5_make_test.cpp LIBS wand_model LABELS model)
wand_add_test(tokenizer_conformance_test SOURCES tokenizer_conformance_test.cpp LIBS wand_model LABELS model)
