// JobSpec: what a job asks for, as plain data with a JSON round trip. The daemon
// builds it from a proto::JobParams plus the owner it read with SO_PEERCRED; the
// journal stores it; a Pipeline reads it.
//
//   sched::JobSpec spec = sched::job_spec_from_json(j);   // throws Error(kBadRequest)
//   sched::validate_job_spec(spec);                       // generic limits, names the field
//   nlohmann::json j = sched::job_spec_to_json(spec);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::sched {

struct JobSpec {
  std::string task = "t2v";              // "t2v" | "i2v" | "ti2v"
  std::string model;                     // model name (PipelineRegistry)
  std::string prompt;
  std::string negative;
  std::vector<std::uint8_t> image;       // encoded input image bytes (i2v / ti2v)
  int width = 0;
  int height = 0;
  int frames = 0;
  int steps = 0;
  std::uint64_t seed = 0;
  std::vector<double> guide_scale;       // empty: model default; 1 value: both experts; 2: (low-noise, high-noise)
  std::optional<double> shift;           // empty: model default
  std::string sampler = "unipc";         // "unipc" | "dpm++"
  int priority = 0;                      // larger first, FIFO within a priority
  unsigned owner_uid = 0;
  unsigned owner_gid = 0;
};

nlohmann::json job_spec_to_json(const JobSpec& spec);
JobSpec job_spec_from_json(const nlohmann::json& j);

// The image format of encoded image bytes by their first bytes ("png", "jpeg", "bmp",
// "webp", "ppm"), or nullptr for anything else (Note [Image sniff], job_spec.cpp).
const char* image_format(const std::vector<std::uint8_t>& bytes);

// Generic limits every pipeline shares (task, sizes, steps, sampler, guide scales, an
// input image that is an image file).
// Throws Error(kBadRequest) naming the field. Model-specific checks live in
// Pipeline::validate.
void validate_job_spec(const JobSpec& spec);

}  // namespace wand::sched
