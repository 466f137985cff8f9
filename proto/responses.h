// Responses, daemon -> client. One struct per response, grouped in the Response
// variant; JSON mapping in responses.cpp. Every request gets exactly one
// response, except watch (JobEvent frames until the job reaches a terminal
// state) and fetch (FetchChunk frames, then FetchEnd). Any request may instead
// get an ErrorReply with a stable code (proto/error_codes.h).
//
//   {"type":"job","id":"j-3","state":"running","step":4,"total_steps":20,...}
//   {"type":"error","code":"not_found","message":"no job j-99"}
//
//   proto::Response r = proto::response_from_json(j);  // throws Error(kBadRequest)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model_traits.h"

namespace wand::proto {

// A job as the daemon reports it. state: queued | running | done | failed | cancelled.
struct JobInfo {
  std::string id;
  std::string state;
  int step = 0;                          // completed denoising steps
  int total_steps = 0;
  std::string model;
  std::string task;
  std::string prompt;
  int width = 0, height = 0, frames = 0;
  std::uint64_t seed = 0;
  int priority = 0;
  unsigned owner_uid = 0;
  double created_at = 0;                 // unix seconds
  double started_at = 0;                 // 0 until it first runs
  double finished_at = 0;                // 0 until terminal
  int resumed_from_step = -1;            // >= 0: last start resumed from this step's checkpoint
  double sec_per_step = 0;               // mean over this run's steps, 0 before the first
  double eta_s = 0;                      // remaining steps * sec_per_step
  bool cancel_requested = false;
  std::string error;                     // failed: why
  std::uint64_t result_bytes = 0;        // done: size of the encoded video
  std::string result_format;             // done: "mp4", "wandrgb", ...
  // Added in protocol 1 without a version bump (optional on the wire, "" / 0 when absent):
  // running: what it does now ("loading", "encoding", "denoising", "switching expert",
  // "decoding", "writing"; Note [Job stages], scheduler/job_runner.cpp)
  std::string stage;
  std::string ran_on;                    // the card ("cuda:1") or card group ("cfg-parallel@0,1")
  int video_width = 0, video_height = 0, video_frames = 0;  // done: the video's real size
};

struct Submitted { std::string id; };
struct JobList { std::vector<JobInfo> jobs; };
// Streamed by watch. kind: "state" (state changed), "step" (a step completed), "stage"
// (JobInfo::stage changed while running; a client that does not know a kind treats it as
// a progress update).
struct JobEvent {
  std::string kind;
  JobInfo job;
  nlohmann::json tiers;                  // tier usage at the time (null when unknown)
};
struct CancelResult {
  std::string id;
  std::string state;                     // state after the request
  bool pending = false;                  // running: stops at the next block boundary
};
// Tier usage. `measured` is false while only configured budgets are known.
struct TiersReport {
  bool measured = false;
  std::string source;                    // "config" | "pool"
  std::string note;
  nlohmann::json tiers;                  // [{"name","kind","bytes_capacity","bytes_used"?...}]
};
struct PlanReport {
  bool available = false;                // false: no planner wired, see note
  std::string note;
  nlohmann::json plan;                   // planner output (null when unavailable)
};
// A model's facts (common/model_traits.h; optional on the wire, empty / 0: unknown) and its
// registry entry.
struct ModelInfo : ModelTraits {
  std::string name;
  std::string dir;
  std::string pipeline;                  // which factory serves it ("fake", "wan", ...)
  std::string error;                     // the configs could not be read: why
  std::vector<std::string> default_loras;  // "name:strength@expert" (Note [LoRA references])
};
// A LoRA the daemon serves (its config's "loras"), from the file's header.
struct LoraInfo {
  std::string name;
  std::string file;                      // admins only
  std::string layout;                    // "diffusers" | "comfyui" | "kohya"
  std::int64_t rank = 0;                 // largest rank of its pairs (0: deltas only)
  std::int64_t tensors = 0;
  std::uint64_t bytes = 0;
  std::string error;                     // the header could not be read: why
};
struct ModelList {
  std::vector<ModelInfo> models;
  std::vector<LoraInfo> loras;
};
struct ShutdownAck {};
struct FetchChunk {
  std::string id;
  std::uint64_t offset = 0;
  std::vector<std::uint8_t> data;        // "data_b64" on the wire
};
struct FetchEnd {
  std::string id;
  std::uint64_t bytes = 0;
  std::string format;
};
struct ErrorReply {
  std::string code;                      // proto::errc::*
  std::string message;
};

void to_json(nlohmann::json& j, const JobInfo& m);
void from_json(const nlohmann::json& j, JobInfo& m);

using Response = std::variant<Submitted, JobInfo, JobList, JobEvent, CancelResult, TiersReport,
                              PlanReport, ModelList, ShutdownAck, FetchChunk, FetchEnd,
                              ErrorReply>;

const char* response_type(const Response& r);
nlohmann::json response_to_json(const Response& r);
Response response_from_json(const nlohmann::json& j);

}  // namespace wand::proto
