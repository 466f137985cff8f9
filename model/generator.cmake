# The Wan generator (owner: pipe): the step-wise t2v / i2v / ti2v generation, image
# preprocessing, checkpoint blobs, and its umT5 text side.
list(APPEND WAND_MODEL_SOURCES
  image_prep.cpp
  generator.cpp
  generator_text.cpp
  tensor_bytes.cpp
)
