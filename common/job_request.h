// JobRequest: what a job asks for, defined once for every layer. It is the wire form
// (proto::JobParams, the "job" object of docs/protocol.md), sched::JobSpec adds the owner the
// daemon reads with SO_PEERCRED (the queue and the journal), and model::GenRequest adds a
// decoded image (the generator). Plain data; the layers pass it on by assignment, never
// field by field.
//
//   JobRequest r;  r.model = "tiny";  r.prompt = "a cat";  r.width = 64;  ...
//   nlohmann::json j = job_request_to_json(r);
//   JobRequest back = job_request_from_json(j, "job");   // throws Error(kBadRequest)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand {

// The order of two guide scales, as messages say it.
inline constexpr const char* kGuideScaleOrder = "(low noise, high noise)";

// Note [LoRA references]: a job names a LoRA the daemon serves (the "loras" section of its
// config, listed by `models`), never a path: the daemon opens no file a client names.
// strength scales the LoRA's delta (W' = W + strength x alpha / rank x up @ down, and
// strength x diff); expert "both" | "high" | "low" picks the A14B expert(s) it applies to
// (a single-model ti2v runs "both" and "high"; "low" names nothing there). The model's
// default LoRAs (its config entry) apply unless the request names the same LoRA: a request
// entry replaces every default entry of that name (strength 0 switches a default off; a
// LoRA of strength 0 is skipped, so the job is bitwise the job without it).
struct LoraRef {
  std::string name;         // [A-Za-z0-9._-]+, not starting with '.'
  double strength = 1.0;    // finite, |strength| <= kMaxLoraStrength
  std::string expert = "both";
  bool operator==(const LoraRef& o) const {
    return name == o.name && strength == o.strength && expert == o.expert;
  }
};
inline constexpr double kMaxLoraStrength = 100.0;

// "NAME[:STRENGTH][@high|@low|@both]" (wanctl --lora, the config's defaults). Throws
// Error(kBadRequest) naming `what` and the text: a bad name, a strength that is not a number.
LoraRef parse_lora_ref(const std::string& text, const std::string& what);
// The same checks on a decoded reference (name charset, strength, expert).
void check_lora_ref(const LoraRef& r, const std::string& what);
// The LoRAs a job runs: `defaults` with each name the request names replaced by the
// request's entries (Note [LoRA references]), entries of strength 0 dropped.
std::vector<LoraRef> effective_loras(const std::vector<LoraRef>& defaults, const std::vector<LoraRef>& requested);
std::string lora_ref_text(const LoraRef& r);  // "name:0.8@high"
nlohmann::json lora_ref_to_json(const LoraRef& r);
LoraRef lora_ref_from_json(const nlohmann::json& j, const std::string& what);

struct JobRequest {
  std::string task = "t2v";          // "t2v" | "i2v" | "ti2v"
  std::string model;                 // a name from `models` (the generator has its model already)
  std::string prompt;                // passed as given (cleaning is the text encoder's job)
  std::string negative;              // empty: the official default negative prompt
  std::vector<std::uint8_t> image;   // encoded image file (PNG, JPEG, ...; i2v / ti2v), may be empty; "image_b64" on the wire
  int width = 0;                     // pixels; 0 (generator only): the model's default (1280x720 A14B, 1280x704 ti2v)
  int height = 0;                    // pixels; 0 (generator only): the model's default
  int frames = 0;                    // 4n + 1; 0 (generator only): the model's default (81 A14B, 121 ti2v)
  int steps = 0;                     // denoising steps; 0 (generator only): the model's default (40 A14B, 50 ti2v)
  std::uint64_t seed = 0;            // seeds the initial noise (Note [CPU noise], model/generator.h)
  std::vector<double> guide_scale;   // empty: the model's; 1 value: both experts; 2: kGuideScaleOrder, the official sample_guide_scale order
  std::optional<double> shift;       // empty: the model's sample_shift
  std::string sampler = "unipc";     // "unipc" | "dpm++" | "euler" (model/sampler_schedule.h)
  int priority = 0;                  // larger runs first; FIFO within a priority
  std::vector<LoraRef> loras;        // Note [LoRA references]; "loras" on the wire, only when given
};

// The JSON object of a request: every field by its name, the image as "image_b64" (base64),
// guide_scale, shift and the image only when given.
nlohmann::json job_request_to_json(const JobRequest& r);
// Reads what job_request_to_json writes (absent optional fields take the defaults above); other
// members are ignored. Throws Error(kBadRequest) naming the field; `what` names the object
// when it is not one.
JobRequest job_request_from_json(const nlohmann::json& j, const std::string& what);

}  // namespace wand
