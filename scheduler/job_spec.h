// JobSpec: a job as the queue, the journal and a Pipeline see it: the request
// (common/job_request.h, the wire's proto::JobParams) and its owner, which the daemon reads
// with SO_PEERCRED. Plain data with a JSON round trip (the journal's "spec").
//
//   sched::JobSpec spec{params, peer.uid, peer.gid};
//   sched::JobSpec spec = sched::job_spec_from_json(j);   // throws Error(kBadRequest)
//   sched::validate_job_spec(spec);                       // generic limits, names the field
//   nlohmann::json j = sched::job_spec_to_json(spec);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_request.h"

namespace wand::sched {

struct JobSpec : JobRequest {
  unsigned owner_uid = 0;  // the submitting client's uid (SO_PEERCRED)
  unsigned owner_gid = 0;  // and its gid
  // The file of each of loras (parallel to it), resolved by the daemon at submit from its
  // config (Note [LoRA references], common/job_request.h): never read from a client's message
  // (a proto::JobParams has no such field), journaled so a resumed job reads the same files.
  std::vector<std::string> lora_files;
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
