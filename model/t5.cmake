# umT5 family (owner: t5): .pth reader/writer, umT5 encoder, tokenizer, text cleaning.
# golden/t5_case.cpp and make_model/t5_part.cpp are in the base list.
list(APPEND WAND_MODEL_SOURCES
  pth.cpp
  t5_encoder.cpp
  text_clean.cpp
  tokenizer.cpp
  tokenizer_spm.cpp
  piece_trie.cpp
  tokenizer_synth.cpp
  t5_writer.cpp
)
