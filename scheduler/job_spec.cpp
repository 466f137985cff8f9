#include "scheduler/job_spec.h"

#include <cctype>
#include <initializer_list>

#include "common/error.h"
#include "common/image_magic.h"
#include "common/json_fields.h"

namespace wand::sched {

using nlohmann::json;

json job_spec_to_json(const JobSpec& s) {
  json j = job_request_to_json(s);
  j["owner_uid"] = s.owner_uid;
  j["owner_gid"] = s.owner_gid;
  if (!s.lora_files.empty()) j["lora_files"] = s.lora_files;
  return j;
}

JobSpec job_spec_from_json(const json& j) {
  JobSpec s{job_request_from_json(j, "job spec")};
  s.owner_uid = static_cast<unsigned>(field_or<std::int64_t>(j, "owner_uid", 0));
  s.owner_gid = static_cast<unsigned>(field_or<std::int64_t>(j, "owner_gid", 0));
  s.lora_files = field_or<std::vector<std::string>>(j, "lora_files", {});
  return s;
}

namespace {
void check_range(const char* name, long long v, long long lo, long long hi) {
  if (v < lo || v > hi) {
    throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "': " + std::to_string(v) +
                                            " is outside [" + std::to_string(lo) + ", " +
                                            std::to_string(hi) + "]");
  }
}
}  // namespace

// Note [Image sniff]: an input image must be an image file, checked at submit by its magic
// bytes (no decoding on the socket thread): anything else (a playlist, a video, a text file)
// is refused there with bad_request (wanctl exit 2) instead of failing later in the job.
// The formats are those the i2v decoder accepts (model/image_prep.h); decoding itself
// checks the rest of the file.
const char* image_format(const std::vector<std::uint8_t>& b) {
  auto starts = [&](std::initializer_list<int> magic, std::size_t at = 0) {
    if (b.size() < at + magic.size()) return false;
    std::size_t i = at;
    for (int m : magic) {
      if (b[i++] != static_cast<std::uint8_t>(m)) return false;
    }
    return true;
  };
  if (starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})) return "png";
  if (starts({0xff, 0xd8, 0xff})) return "jpeg";
  if (starts({'B', 'M'}) && b.size() >= 26) return "bmp";
  if (starts({'R', 'I', 'F', 'F'}) && starts({'W', 'E', 'B', 'P'}, 8)) return "webp";
  if (starts({'P', '6'}) && b.size() > 2 && std::isspace(b[2])) return "ppm";
  return nullptr;
}

void validate_job_spec(const JobSpec& s) {
  if (s.task != "t2v" && s.task != "i2v" && s.task != "ti2v") {
    throw Error(ErrorCode::kBadRequest,
                "field 'task': '" + s.task + "' is not one of t2v, i2v, ti2v");
  }
  if (s.model.empty()) throw Error(ErrorCode::kBadRequest, "field 'model' is empty");
  // Issue 15: a prompt travels in every list reply and journal record. umT5 reads at
  // most 512 tokens; 16 KiB of text is far more than that.
  constexpr std::size_t kMaxText = 16 << 10;
  for (const auto& [name, text] : {std::pair<const char*, const std::string*>{"prompt", &s.prompt},
                                   {"negative", &s.negative}, {"model", &s.model}}) {
    if (text->size() > kMaxText) {
      throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "': " + std::to_string(text->size()) +
                                              " bytes, more than the maximum of " + std::to_string(kMaxText));
    }
  }
  check_range("width", s.width, 16, 8192);
  check_range("height", s.height, 16, 8192);
  check_range("frames", s.frames, 1, 4096);
  check_range("steps", s.steps, 1, 1000);
  check_range("priority", s.priority, -1000, 1000);
  if (s.sampler != "unipc" && s.sampler != "dpm++" && s.sampler != "euler") {
    throw Error(ErrorCode::kBadRequest,
                "field 'sampler': '" + s.sampler + "' is not one of unipc, dpm++, euler");
  }
  if (s.guide_scale.size() > 2) {
    throw Error(ErrorCode::kBadRequest, std::string("field 'guide_scale': at most two values ") + kGuideScaleOrder);
  }
  if (s.task == "i2v" && s.image.empty()) {
    throw Error(ErrorCode::kBadRequest, "field 'image': task i2v needs an input image");
  }
  // Note [Image bytes only] (model/video.cpp) and Note [Image sniff]: only image formats are
  // ever decoded; anything else is refused here, before the job is accepted, with its first
  // bytes so the user sees what was sent.
  if (!s.image.empty() && (sniff_image_format(s.image.data(), s.image.size()) == ImageFormat::kUnknown ||
                           !image_format(s.image))) {
    std::string head;
    for (std::size_t i = 0; i < s.image.size() && i < 8; ++i) {
      static const char* kHex = "0123456789abcdef";
      head += (i ? " " : "") + std::string{kHex[s.image[i] >> 4], kHex[s.image[i] & 15]};
    }
    throw Error(ErrorCode::kBadRequest, std::string("field 'image': ") + kImageFormatsText + " (" +
                                            std::to_string(s.image.size()) + " bytes starting " + head + ")");
  }
  if (s.task == "t2v" && !s.image.empty()) {
    throw Error(ErrorCode::kBadRequest, "field 'image': task t2v takes no input image");
  }
}

}  // namespace wand::sched
