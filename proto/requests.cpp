#include "proto/requests.h"

#include "common/error.h"
#include "common/json_fields.h"

namespace wand::proto {

using nlohmann::json;

namespace {

struct ToJson {
  json operator()(const Submit& m) const { return {{"type", "submit"}, {"job", job_request_to_json(m.job)}}; }
  json operator()(const ListJobs&) const { return {{"type", "list"}}; }
  json operator()(const GetStatus& m) const { return {{"type", "status"}, {"job", m.job}}; }
  json operator()(const Watch& m) const { return {{"type", "watch"}, {"job", m.job}}; }
  json operator()(const Cancel& m) const { return {{"type", "cancel"}, {"job", m.job}}; }
  json operator()(const GetTiers&) const { return {{"type", "tiers"}}; }
  json operator()(const GetPlan& m) const { return {{"type", "plan"}, {"job", job_request_to_json(m.job)}}; }
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
  return job_request_from_json(*it, "job");
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
