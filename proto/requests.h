// Requests, client -> daemon. One struct per request, grouped in the Request
// variant; the JSON mapping of each sits in requests.cpp. On the wire every
// request is one frame holding an object with a "type" field:
//
//   {"type":"submit","job":{"model":"tiny","prompt":"a cat","width":64,...}}
//   {"type":"status","job":"j-3"}
//
//   proto::Request r = proto::request_from_json(j);   // throws Error(kBadRequest)
//   nlohmann::json j = proto::request_to_json(r);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_request.h"

namespace wand::proto {

// What a job asks for: the request defined once (common/job_request.h; the daemon adds the
// owner it takes from SO_PEERCRED to make a sched::JobSpec). `image` travels base64 in
// "image_b64".
using JobParams = JobRequest;

struct Submit { JobParams job; };            // -> Submitted
struct ListJobs {};                          // -> JobList (the caller's jobs; all for admins)
struct GetStatus { std::string job; };       // -> JobInfo
struct Watch { std::string job; };           // -> JobEvent... until a terminal state
struct Cancel { std::string job; };          // -> CancelResult
struct GetTiers {};                          // -> TiersReport
struct GetPlan { JobParams job; };           // -> PlanReport
struct ListModels {};                        // -> ModelList
struct Shutdown {};                          // -> ShutdownAck (admin only), then the daemon stops
struct Fetch { std::string job; };           // -> FetchChunk... FetchEnd

using Request = std::variant<Submit, ListJobs, GetStatus, Watch, Cancel, GetTiers, GetPlan,
                             ListModels, Shutdown, Fetch>;

// The "type" string of a request ("submit", "list", ...).
const char* request_type(const Request& r);
nlohmann::json request_to_json(const Request& r);
// Throws Error(kBadRequest) naming the type or the field that is wrong.
Request request_from_json(const nlohmann::json& j);

}  // namespace wand::proto
