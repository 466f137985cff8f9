# umT5 family: .pth reader/writer, umT5 encoder, tokenizer, text cleaning.
list(APPEND WAND_MODEL_SOURCES
  pth.cpp
)
