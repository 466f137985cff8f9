#include "common/job_request.h"

#include "common/base64.h"
#include "common/json_fields.h"

namespace wand {

using nlohmann::json;

json job_request_to_json(const JobRequest& r) {
  json j = {{"task", r.task},         {"model", r.model},   {"prompt", r.prompt},
            {"negative", r.negative}, {"width", r.width},   {"height", r.height},
            {"frames", r.frames},     {"steps", r.steps},   {"seed", r.seed},
            {"sampler", r.sampler},   {"priority", r.priority}};
  if (!r.image.empty()) j["image_b64"] = base64_encode(r.image);
  if (!r.guide_scale.empty()) j["guide_scale"] = r.guide_scale;
  if (r.shift) j["shift"] = *r.shift;
  return j;
}

JobRequest job_request_from_json(const json& j, const std::string& what) {
  require_object(j, what);
  JobRequest r;
  r.task = field_or<std::string>(j, "task", "t2v");
  r.model = field<std::string>(j, "model");
  r.prompt = field_or<std::string>(j, "prompt", "");
  r.negative = field_or<std::string>(j, "negative", "");
  if (auto b64 = optional_field<std::string>(j, "image_b64")) r.image = base64_decode(*b64);
  r.width = field<int>(j, "width");
  r.height = field<int>(j, "height");
  r.frames = field<int>(j, "frames");
  r.steps = field<int>(j, "steps");
  r.seed = field_or<std::uint64_t>(j, "seed", 0);
  r.guide_scale = field_or<std::vector<double>>(j, "guide_scale", {});
  r.shift = optional_field<double>(j, "shift");
  r.sampler = field_or<std::string>(j, "sampler", "unipc");
  r.priority = field_or<int>(j, "priority", 0);
  return r;
}

}  // namespace wand
