// Golden cases: recompute, with the project's code, the outputs that a case of
// tests/data/golden (a copy of the steering repo's shared/golden) lists, from its case.json, checkpoint files and
// inputs.safetensors. Never reads outputs.safetensors.
//
//   Outputs out = wand::model::golden::run_case("tests/data/golden/dit_t2v");
//   save_safetensors("out.safetensors", out);
//
// Dispatch is on case.json's "case" field; each family has one handler,
// implemented beside the model code it exercises.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace wand::model::golden {

struct Case {
  std::filesystem::path dir;
  nlohmann::json spec;                       // case.json
  std::map<std::string, at::Tensor> inputs;  // inputs.safetensors (stored dtypes)
};

using Outputs = std::map<std::string, at::Tensor>;

Case load_case(const std::filesystem::path& dir);
// Every output that case.json lists, except names ending in "_f32run".
Outputs run_case(const std::filesystem::path& dir);
// Names run_case must produce for this case.
std::vector<std::string> expected_outputs(const Case& c);

// Handlers (one per family).
Outputs run_rope(const Case& c);           // rope
Outputs run_dit(const Case& c);            // dit_t2v, dit_i2v, dit_ti2v
Outputs run_scheduler(const Case& c);      // sched_unipc, sched_dpmpp
Outputs run_moe_boundary(const Case& c);   // moe_boundary
Outputs run_t5(const Case& c);             // t5
Outputs run_vae(const Case& c);            // vae21, vae22

}  // namespace wand::model::golden
