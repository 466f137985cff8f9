# Pipelines (owner: pipe): the step-wise t2v / i2v / ti2v generators, image
# preprocessing, checkpoint blobs, and the umT5 text side of the pipelines.
list(APPEND WAND_MODEL_SOURCES
  image_prep.cpp
  pipeline.cpp
  pipeline_bytes.cpp
)
# The umT5 text encoder needs the umT5 family's tokenizer and text cleaning;
# without them the stub asks for an injected text encoder.
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer.cpp AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/text_clean.cpp
   AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/t5_encoder.cpp)
  list(APPEND WAND_MODEL_SOURCES pipeline_text.cpp)
else()
  list(APPEND WAND_MODEL_SOURCES pipeline_text_stub.cpp)
endif()
