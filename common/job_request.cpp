#include "common/job_request.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/base64.h"
#include "common/error.h"
#include "common/json_fields.h"

namespace wand {

using nlohmann::json;

void check_lora_ref(const LoraRef& r, const std::string& what) {
  if (r.name.empty()) throw Error(ErrorCode::kBadRequest, what + ": empty LoRA name");
  for (char c : r.name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) {
      throw Error(ErrorCode::kBadRequest,
                  what + ": LoRA '" + r.name + "' is not a name (letters, digits, '.', '_', '-'): a job names a LoRA "
                  "the daemon serves (`wanctl models` lists them), not a file");
    }
  }
  if (r.name[0] == '.') throw Error(ErrorCode::kBadRequest, what + ": LoRA name '" + r.name + "' starts with '.'");
  if (!std::isfinite(r.strength) || std::fabs(r.strength) > kMaxLoraStrength) {
    throw Error(ErrorCode::kBadRequest, what + ": LoRA '" + r.name + "' strength " + std::to_string(r.strength) +
                                            " is not a finite number within +-" + std::to_string(kMaxLoraStrength));
  }
  if (r.expert != "both" && r.expert != "high" && r.expert != "low") {
    throw Error(ErrorCode::kBadRequest,
                what + ": LoRA '" + r.name + "' expert '" + r.expert + "' is not one of both, high, low");
  }
}

LoraRef parse_lora_ref(const std::string& text, const std::string& what) {
  LoraRef r;
  std::string rest = text;
  const std::size_t at = rest.rfind('@');
  if (at != std::string::npos) {
    r.expert = rest.substr(at + 1);
    rest = rest.substr(0, at);
  }
  const std::size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    const std::string num = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    char* end = nullptr;
    const double v = num.empty() ? 0 : std::strtod(num.c_str(), &end);
    if (num.empty() || end == nullptr || *end != '\0') {
      throw Error(ErrorCode::kBadRequest,
                  what + ": '" + text + "': strength '" + num + "' is not a number (NAME[:STRENGTH][@high|@low])");
    }
    r.strength = v;
  }
  r.name = rest;
  check_lora_ref(r, what + " '" + text + "'");
  return r;
}

std::vector<LoraRef> effective_loras(const std::vector<LoraRef>& defaults, const std::vector<LoraRef>& requested) {
  std::vector<LoraRef> out;
  auto named = [&](const std::string& n) {
    for (const LoraRef& q : requested) {
      if (q.name == n) return true;
    }
    return false;
  };
  for (const LoraRef& d : defaults) {
    if (!named(d.name)) out.push_back(d);
  }
  for (const LoraRef& q : requested) out.push_back(q);
  std::vector<LoraRef> kept;
  for (const LoraRef& r : out) {
    if (r.strength != 0.0) kept.push_back(r);
  }
  return kept;
}

std::string lora_ref_text(const LoraRef& r) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", r.strength);
  return r.name + ":" + buf + "@" + r.expert;
}

json lora_ref_to_json(const LoraRef& r) { return {{"name", r.name}, {"strength", r.strength}, {"expert", r.expert}}; }

LoraRef lora_ref_from_json(const json& j, const std::string& what) {
  require_object(j, what);
  LoraRef r;
  r.name = field<std::string>(j, "name");
  r.strength = field_or<double>(j, "strength", 1.0);
  r.expert = field_or<std::string>(j, "expert", "both");
  check_lora_ref(r, what);
  return r;
}

json job_request_to_json(const JobRequest& r) {
  json j = {{"task", r.task},         {"model", r.model},   {"prompt", r.prompt},
            {"negative", r.negative}, {"width", r.width},   {"height", r.height},
            {"frames", r.frames},     {"steps", r.steps},   {"seed", r.seed},
            {"sampler", r.sampler},   {"priority", r.priority}};
  if (!r.image.empty()) j["image_b64"] = base64_encode(r.image);
  if (!r.guide_scale.empty()) j["guide_scale"] = r.guide_scale;
  if (r.shift) j["shift"] = *r.shift;
  if (!r.loras.empty()) {
    json a = json::array();
    for (const LoraRef& l : r.loras) a.push_back(lora_ref_to_json(l));
    j["loras"] = a;
  }
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
  if (j.contains("loras") && !j["loras"].is_null()) {
    const json& a = j["loras"];
    if (!a.is_array()) throw Error(ErrorCode::kBadRequest, "field 'loras': expected an array of objects");
    for (std::size_t i = 0; i < a.size(); ++i) {
      r.loras.push_back(lora_ref_from_json(a[i], "field 'loras[" + std::to_string(i) + "]'"));
    }
  }
  return r;
}

}  // namespace wand
