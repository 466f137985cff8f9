// ModelTraits: what a model accepts, read from its directory's configs without loading any
// weight (Note [Checks from the config], model/generator.cpp). The generator derives it from
// its config (WanGenerator::traits_of), the pipeline registry hands it out, and `models`
// shows it (proto::ModelInfo is this struct plus the registry's entry). 0 / empty: not known.
#pragma once

#include <string>
#include <vector>

namespace wand {

struct ModelTraits {
  std::string variant;                 // "t2v-A14B", "i2v-A14B", "ti2v-5B", "tiny-t2v", "fake", ...
  std::vector<std::string> tasks;      // t2v-A14B: t2v; i2v-A14B: i2v; ti2v-5B: ti2v, t2v, i2v
  int size_multiple = 0;               // width and height are multiples of it (16 A14B, 32 ti2v)
  int default_width = 0;               // 1280
  int default_height = 0;              // 720 A14B, 704 ti2v
  int default_frames = 0;              // 4n + 1: 81 A14B, 121 ti2v
  int default_steps = 0;               // the variant's sample_steps
  int fps = 0;                         // 16 A14B, 24 ti2v
};

}  // namespace wand
