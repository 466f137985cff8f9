#include "proto/requests.h"

#include "common/error.h"
#include "proto/base64.h"
#include "proto/json_fields.h"

namespace wand::proto {

using nlohmann::json;

void to_json(json& j, const JobParams& m) {
  j = {{"task", m.task},     {"model", m.model},   {"prompt", m.prompt},
       {"negative", m.negative}, {"width", m.width}, {"height", m.height},
       {"frames", m.frames}, {"steps", m.steps},   {"seed", m.seed},
       {"sampler", m.sampler}, {"priority", m.priority}};
  if (!m.image.empty()) j["image_b64"] = base64_encode(m.image);
  if (!m.guide_scale.empty()) j["guide_scale"] = m.guide_scale;
  if (m.shift) j["shift"] = *m.shift;
}

void from_json(const json& j, JobParams& m) {
  require_object(j, "job");
  m.task = field_or<std::string>(j, "task", "t2v");
  m.model = field<std::string>(j, "model");
  m.prompt = field_or<std::string>(j, "prompt", "");
  m.negative = field_or<std::string>(j, "negative", "");
  m.image.clear();
  if (auto b64 = optional_field<std::string>(j, "image_b64")) m.image = base64_decode(*b64);
  m.width = field<int>(j, "width");
  m.height = field<int>(j, "height");
  m.frames = field<int>(j, "frames");
  m.steps = field<int>(j, "steps");
  m.seed = field_or<std::uint64_t>(j, "seed", 0);
  m.guide_scale = field_or<std::vector<double>>(j, "guide_scale", {});
  m.shift = optional_field<double>(j, "shift");
  m.sampler = field_or<std::string>(j, "sampler", "unipc");
  m.priority = field_or<int>(j, "priority", 0);
}

namespace {

struct ToJson {
  json operator()(const Submit& m) const { return {{"type", "submit"}, {"job", m.job}}; }
  json operator()(const ListJobs&) const { return {{"type", "list"}}; }
  json operator()(const GetStatus& m) const { return {{"type", "status"}, {"job", m.job}}; }
  json operator()(const Watch& m) const { return {{"type", "watch"}, {"job", m.job}}; }
  json operator()(const Cancel& m) const { return {{"type", "cancel"}, {"job", m.job}}; }
  json operator()(const GetTiers&) const { return {{"type", "tiers"}}; }
  json operator()(const GetPlan& m) const { return {{"type", "plan"}, {"job", m.job}}; }
  json operator()(const ListModels&) const { return {{"type", "models"}}; }
  json operator()(const Shutdown&) const { return {{"type", "shutdown"}}; }
  json operator()(const Fetch& m) const { return {{"type", "fetch"}, {"job", m.job}}; }
};

struct TypeName {
  const char* operator()(const Submit&) const { return "submit"; }
  const char* operator()(const ListJobs&) const { return "list"; }
  const char* operator()(const GetStatus&) const { return "status"; }
  const char* operator()(const Watch&) const { return "watch"; }
  const char* operator()(const Cancel&) const { return "cancel"; }
  const char* operator()(const GetTiers&) const { return "tiers"; }
  const char* operator()(const GetPlan&) const { return "plan"; }
  const char* operator()(const ListModels&) const { return "models"; }
  const char* operator()(const Shutdown&) const { return "shutdown"; }
  const char* operator()(const Fetch&) const { return "fetch"; }
};

JobParams job_params(const json& j) {
  auto it = j.find("job");
  if (it == j.end()) throw Error(ErrorCode::kBadRequest, "field 'job' is missing");
  return it->get<JobParams>();
}

Request decode(const std::string& type, const json& j) {
  if (type == "submit") return Submit{job_params(j)};
  if (type == "list") return ListJobs{};
  if (type == "status") return GetStatus{field<std::string>(j, "job")};
  if (type == "watch") return Watch{field<std::string>(j, "job")};
  if (type == "cancel") return Cancel{field<std::string>(j, "job")};
  if (type == "tiers") return GetTiers{};
  if (type == "plan") return GetPlan{job_params(j)};
  if (type == "models") return ListModels{};
  if (type == "shutdown") return Shutdown{};
  if (type == "fetch") return Fetch{field<std::string>(j, "job")};
  throw Error(ErrorCode::kBadRequest, "unknown request type '" + type + "'");
}

}  // namespace

const char* request_type(const Request& r) { return std::visit(TypeName{}, r); }

json request_to_json(const Request& r) { return std::visit(ToJson{}, r); }

Request request_from_json(const json& j) { return decode_tagged<Request>(j, "request", decode); }

}  // namespace wand::proto
