# umT5 family (owner: t5): umT5 encoder, tokenizer, text cleaning. The .pth reader /
# writer (pth.cpp and its parts), golden/t5_case.cpp and make_model/t5_part.cpp are in
# the base list (CMakeLists.txt).
list(APPEND WAND_MODEL_SOURCES
  t5_encoder.cpp
  text_clean.cpp
  tokenizer.cpp
  tokenizer_spm.cpp
  piece_trie.cpp
  tokenizer_synth.cpp
  t5_writer.cpp
)
