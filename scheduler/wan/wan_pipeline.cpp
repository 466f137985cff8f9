#include "scheduler/wan/wan_pipeline.h"

#include <cmath>
#include <cstring>

#include "common/error.h"
#include "model/pipeline.h"
#include "model/video.h"

namespace wand::sched {

namespace {

struct WanJobState : JobState {
  model::GenState gen;
};

WanJobState& cast(JobState& s) {
  auto* w = dynamic_cast<WanJobState*>(&s);
  if (!w) throw Error(ErrorCode::kInternal, "wan pipeline: job state of another pipeline");
  return *w;
}
const WanJobState& cast(const JobState& s) {
  auto* w = dynamic_cast<const WanJobState*>(&s);
  if (!w) throw Error(ErrorCode::kInternal, "wan pipeline: job state of another pipeline");
  return *w;
}

model::GenRequest to_request(const JobSpec& spec) {
  model::GenRequest r;
  r.task = spec.task;
  r.prompt = spec.prompt;
  r.negative = spec.negative;
  r.image_bytes = spec.image;
  r.width = spec.width;
  r.height = spec.height;
  r.frames = spec.frames;
  r.steps = spec.steps;
  r.seed = spec.seed;
  r.guide_scale = spec.guide_scale;
  r.shift = spec.shift;
  r.sampler = spec.sampler;
  return r;
}

model::CancelCheck checker(CancelToken& token) {
  return [&token] { token.throw_if_cancelled(); };
}

}  // namespace

WanPipeline::WanPipeline(const std::filesystem::path& dir)
    : gen_(std::make_unique<model::WanGenerator>(dir)) {}

WanPipeline::WanPipeline(const std::filesystem::path& dir, const model::GeneratorOptions& options)
    : gen_(std::make_unique<model::WanGenerator>(dir, options)) {}

WanPipeline::~WanPipeline() = default;

void WanPipeline::validate(const JobSpec& spec) const { gen_->validate(to_request(spec)); }

std::unique_ptr<JobState> WanPipeline::prepare(const JobSpec& spec, CancelToken& token) {
  auto st = std::make_unique<WanJobState>();
  st->gen = gen_->prepare(to_request(spec), checker(token));
  return st;
}

void WanPipeline::step(JobState& state, CancelToken& token) { gen_->step(cast(state).gen, checker(token)); }

int WanPipeline::total_steps(const JobState& state) const { return cast(state).gen.total_steps(); }

int WanPipeline::completed_steps(const JobState& state) const { return cast(state).gen.completed_steps(); }

Video WanPipeline::decode(JobState& state, CancelToken& token) {
  const model::GenState& st = cast(state).gen;
  at::Tensor rgb = model::WanGenerator::to_uint8(gen_->decode(st, checker(token)));  // [F, H, W, 3]
  Video v;
  v.frames = static_cast<int>(rgb.size(0));
  v.height = static_cast<int>(rgb.size(1));
  v.width = static_cast<int>(rgb.size(2));
  v.fps = gen_->fps();
  v.rgb.resize(static_cast<std::size_t>(rgb.numel()));
  std::memcpy(v.rgb.data(), rgb.data_ptr<std::uint8_t>(), v.rgb.size());
  return v;
}

void WanPipeline::save_state(const JobState& state, StateBlobs& out) const {
  for (auto& [name, bytes] : gen_->save_state(cast(state).gen)) out[name] = std::move(bytes);
}

void WanPipeline::load_state(JobState& state, const StateBlobs& in) const { gen_->load_state(cast(state).gen, in); }

bool probe_wan_dir(const std::filesystem::path& dir) { return model::WanGenerator::probe(dir); }

std::unique_ptr<Pipeline> make_wan_pipeline(const std::filesystem::path& dir) {
  return std::make_unique<WanPipeline>(dir);
}

EncodedVideo encode_wan_video(const Video& video) {
  model::VideoFrames f;
  f.frames = video.frames;
  f.height = video.height;
  f.width = video.width;
  f.rgb = video.rgb;
  model::EncodedVideo e = model::encode_video(f, static_cast<int>(std::lround(video.fps)));
  EncodedVideo out;
  out.format = e.extension;
  out.bytes = std::move(e.bytes);
  return out;
}

void register_wan_pipeline(PipelineRegistry& registry) {
  registry.add_factory({"wan", probe_wan_dir, make_wan_pipeline, encode_wan_video});
}

}  // namespace wand::sched
