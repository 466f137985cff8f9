#include "proto/responses.h"

#include "common/base64.h"
#include "common/error.h"
#include "common/json_fields.h"

namespace wand::proto {

using nlohmann::json;

void to_json(json& j, const JobInfo& m) {
  j = {{"id", m.id},
       {"state", m.state},
       {"step", m.step},
       {"total_steps", m.total_steps},
       {"model", m.model},
       {"task", m.task},
       {"prompt", m.prompt},
       {"width", m.width},
       {"height", m.height},
       {"frames", m.frames},
       {"seed", m.seed},
       {"priority", m.priority},
       {"owner_uid", m.owner_uid},
       {"created_at", m.created_at},
       {"started_at", m.started_at},
       {"finished_at", m.finished_at},
       {"resumed_from_step", m.resumed_from_step},
       {"sec_per_step", m.sec_per_step},
       {"eta_s", m.eta_s},
       {"cancel_requested", m.cancel_requested},
       {"error", m.error},
       {"result_bytes", m.result_bytes},
       {"result_format", m.result_format}};
  if (!m.stage.empty()) j["stage"] = m.stage;
  if (!m.ran_on.empty()) j["ran_on"] = m.ran_on;
  if (m.video_width > 0) {
    j["video_width"] = m.video_width;
    j["video_height"] = m.video_height;
    j["video_frames"] = m.video_frames;
  }
}

void from_json(const json& j, JobInfo& m) {
  require_object(j, "job");
  m.id = field<std::string>(j, "id");
  m.state = field<std::string>(j, "state");
  m.step = field_or<int>(j, "step", 0);
  m.total_steps = field_or<int>(j, "total_steps", 0);
  m.model = field_or<std::string>(j, "model", "");
  m.task = field_or<std::string>(j, "task", "");
  m.prompt = field_or<std::string>(j, "prompt", "");
  m.width = field_or<int>(j, "width", 0);
  m.height = field_or<int>(j, "height", 0);
  m.frames = field_or<int>(j, "frames", 0);
  m.seed = field_or<std::uint64_t>(j, "seed", 0);
  m.priority = field_or<int>(j, "priority", 0);
  m.owner_uid = static_cast<unsigned>(field_or<std::int64_t>(j, "owner_uid", 0));
  m.created_at = field_or<double>(j, "created_at", 0);
  m.started_at = field_or<double>(j, "started_at", 0);
  m.finished_at = field_or<double>(j, "finished_at", 0);
  m.resumed_from_step = field_or<int>(j, "resumed_from_step", -1);
  m.sec_per_step = field_or<double>(j, "sec_per_step", 0);
  m.eta_s = field_or<double>(j, "eta_s", 0);
  m.cancel_requested = field_or<bool>(j, "cancel_requested", false);
  m.error = field_or<std::string>(j, "error", "");
  m.result_bytes = field_or<std::uint64_t>(j, "result_bytes", 0);
  m.result_format = field_or<std::string>(j, "result_format", "");
  m.stage = field_or<std::string>(j, "stage", "");
  m.ran_on = field_or<std::string>(j, "ran_on", "");
  m.video_width = field_or<int>(j, "video_width", 0);
  m.video_height = field_or<int>(j, "video_height", 0);
  m.video_frames = field_or<int>(j, "video_frames", 0);
}

namespace {

json job_json(const JobInfo& m) {
  json j = m;
  return j;
}

struct ToJson {
  json operator()(const Submitted& m) const { return {{"type", "submitted"}, {"id", m.id}}; }
  json operator()(const JobInfo& m) const {
    json j = job_json(m);
    j["type"] = "job";
    return j;
  }
  json operator()(const JobList& m) const {
    json arr = json::array();
    for (const auto& job : m.jobs) arr.push_back(job_json(job));
    return {{"type", "jobs"}, {"jobs", arr}};
  }
  json operator()(const JobEvent& m) const {
    return {{"type", "event"}, {"kind", m.kind}, {"job", job_json(m.job)}, {"tiers", m.tiers}};
  }
  json operator()(const CancelResult& m) const {
    return {{"type", "cancelled"}, {"id", m.id}, {"state", m.state}, {"pending", m.pending}};
  }
  json operator()(const TiersReport& m) const {
    return {{"type", "tiers"}, {"measured", m.measured}, {"source", m.source},
            {"note", m.note},  {"tiers", m.tiers}};
  }
  json operator()(const PlanReport& m) const {
    return {{"type", "plan"}, {"available", m.available}, {"note", m.note}, {"plan", m.plan}};
  }
  json operator()(const ModelList& m) const {
    json arr = json::array();
    for (const auto& x : m.models) {
      json e = {{"name", x.name}, {"dir", x.dir}, {"pipeline", x.pipeline}};
      if (!x.variant.empty()) e["variant"] = x.variant;
      if (!x.tasks.empty()) e["tasks"] = x.tasks;
      if (x.size_multiple > 0) e["size_multiple"] = x.size_multiple;
      if (x.default_width > 0) {
        e["default_width"] = x.default_width;
        e["default_height"] = x.default_height;
      }
      if (x.default_frames > 0) e["default_frames"] = x.default_frames;
      if (x.default_steps > 0) e["default_steps"] = x.default_steps;
      if (x.fps > 0) e["fps"] = x.fps;
      if (!x.error.empty()) e["error"] = x.error;
      if (!x.default_loras.empty()) e["default_loras"] = x.default_loras;
      arr.push_back(std::move(e));
    }
    json loras = json::array();
    for (const auto& l : m.loras) {
      json e = {{"name", l.name}, {"layout", l.layout}, {"rank", l.rank}, {"tensors", l.tensors}, {"bytes", l.bytes}};
      if (!l.file.empty()) e["file"] = l.file;
      if (!l.error.empty()) e["error"] = l.error;
      loras.push_back(std::move(e));
    }
    json out = {{"type", "models"}, {"models", arr}};
    if (!loras.empty()) out["loras"] = loras;  // only from a daemon that serves LoRAs
    return out;
  }
  json operator()(const ShutdownAck&) const { return {{"type", "shutdown"}}; }
  json operator()(const FetchChunk& m) const {
    return {{"type", "chunk"}, {"id", m.id}, {"offset", m.offset},
            {"data_b64", base64_encode(m.data)}};
  }
  json operator()(const FetchEnd& m) const {
    return {{"type", "end"}, {"id", m.id}, {"bytes", m.bytes}, {"format", m.format}};
  }
  json operator()(const ErrorReply& m) const {
    return {{"type", "error"}, {"code", m.code}, {"message", m.message}};
  }
};

const json& member(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "' is missing");
  return *it;
}

Response decode(const std::string& type, const json& j) {
  if (type == "submitted") return Submitted{field<std::string>(j, "id")};
  if (type == "job") return j.get<JobInfo>();
  if (type == "jobs") {
    const json& arr = member(j, "jobs");
    if (!arr.is_array()) throw Error(ErrorCode::kBadRequest, "field 'jobs': expected an array");
    JobList out;
    for (const auto& e : arr) out.jobs.push_back(e.get<JobInfo>());
    return out;
  }
  if (type == "event") {
    JobEvent e;
    e.kind = field<std::string>(j, "kind");
    e.job = member(j, "job").get<JobInfo>();
    e.tiers = j.value("tiers", json());
    return e;
  }
  if (type == "cancelled") {
    return CancelResult{field<std::string>(j, "id"), field<std::string>(j, "state"),
                        field_or<bool>(j, "pending", false)};
  }
  if (type == "tiers") {
    return TiersReport{field<bool>(j, "measured"), field_or<std::string>(j, "source", ""),
                       field_or<std::string>(j, "note", ""), j.value("tiers", json())};
  }
  if (type == "plan") {
    return PlanReport{field<bool>(j, "available"), field_or<std::string>(j, "note", ""),
                      j.value("plan", json())};
  }
  if (type == "models") {
    const json& arr = member(j, "models");
    if (!arr.is_array()) throw Error(ErrorCode::kBadRequest, "field 'models': expected an array");
    ModelList out;
    for (const auto& e : arr) {
      require_object(e, "model");
      ModelInfo m;
      m.name = field<std::string>(e, "name");
      m.dir = field_or<std::string>(e, "dir", "");
      m.pipeline = field_or<std::string>(e, "pipeline", "");
      m.variant = field_or<std::string>(e, "variant", "");
      m.tasks = field_or<std::vector<std::string>>(e, "tasks", {});
      m.size_multiple = field_or<int>(e, "size_multiple", 0);
      m.default_width = field_or<int>(e, "default_width", 0);
      m.default_height = field_or<int>(e, "default_height", 0);
      m.default_frames = field_or<int>(e, "default_frames", 0);
      m.default_steps = field_or<int>(e, "default_steps", 0);
      m.fps = field_or<int>(e, "fps", 0);
      m.error = field_or<std::string>(e, "error", "");
      m.default_loras = field_or<std::vector<std::string>>(e, "default_loras", {});
      out.models.push_back(std::move(m));
    }
    if (j.contains("loras") && j["loras"].is_array()) {
      for (const auto& e : j["loras"]) {
        require_object(e, "lora");
        LoraInfo l;
        l.name = field<std::string>(e, "name");
        l.file = field_or<std::string>(e, "file", "");
        l.layout = field_or<std::string>(e, "layout", "");
        l.rank = field_or<std::int64_t>(e, "rank", 0);
        l.tensors = field_or<std::int64_t>(e, "tensors", 0);
        l.bytes = field_or<std::uint64_t>(e, "bytes", 0);
        l.error = field_or<std::string>(e, "error", "");
        out.loras.push_back(std::move(l));
      }
    }
    return out;
  }
  if (type == "shutdown") return ShutdownAck{};
  if (type == "chunk") {
    return FetchChunk{field<std::string>(j, "id"), field<std::uint64_t>(j, "offset"),
                      base64_decode(field<std::string>(j, "data_b64"))};
  }
  if (type == "end") {
    return FetchEnd{field<std::string>(j, "id"), field<std::uint64_t>(j, "bytes"),
                    field_or<std::string>(j, "format", "")};
  }
  if (type == "error") {
    return ErrorReply{field<std::string>(j, "code"), field_or<std::string>(j, "message", "")};
  }
  throw Error(ErrorCode::kBadRequest, "unknown response type '" + type + "'");
}

}  // namespace

const char* response_type(const Response& r) {
  static const char* const kNames[] = {"submitted", "job",      "jobs",  "event",
                                       "cancelled", "tiers",    "plan",  "models",
                                       "shutdown",  "chunk",    "end",   "error"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == std::variant_size_v<Response>);
  return kNames[r.index()];
}

json response_to_json(const Response& r) { return std::visit(ToJson{}, r); }

Response response_from_json(const json& j) { return decode_tagged<Response>(j, "response", decode); }

}  // namespace wand::proto
