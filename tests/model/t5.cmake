# umT5 family tests (label model).
wand_add_test(pth_test SOURCES pth_test.cpp LIBS wand_model LABELS model)
