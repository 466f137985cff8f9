# The golden reference set's own integrity (label model).
wand_add_test(golden_manifest_test SOURCES golden_manifest_test.cpp LIBS nlohmann_json::nlohmann_json LABELS model)
