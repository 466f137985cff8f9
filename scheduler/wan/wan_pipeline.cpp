#include "scheduler/wan/wan_pipeline.h"

#include <atomic>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "memory/memory_pool.h"
#include "model/pipeline.h"
#include "model/video.h"
#include "scheduler/exec/streamed_dit.h"

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

namespace {

// GeneratorOptions for a streamed pipeline: the device of the tier, the run dtype, and a
// cfg_forward that calls the StreamedDit built right after the generator.
model::GeneratorOptions streamed_options(const WanStreamContext& c, model::GeneratorOptions g,
                                         std::unique_ptr<exec::StreamedDit>* streamed) {
  if (c.pool == nullptr) throw Error(ErrorCode::kConfig, "wan pipeline: streamed mode without a memory pool");
  g.device = c.cuda_device < 0 ? at::Device(at::kCPU)
                               : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(c.cuda_device));
  if (!c.run_dtype.empty()) {
    g.run_dtype = model::parse_run_dtype(c.run_dtype);
  } else if (!g.run_dtype) {
    g.run_dtype = c.cuda_device < 0 ? model::RunDtype::kFloat32 : model::RunDtype::kBFloat16;
  }
  g.cfg_forward = [streamed](const model::StepForwardInputs& in, const model::CancelCheck& check) {
    if (!*streamed) throw Error(ErrorCode::kInternal, "wan pipeline: the streamed DiT is not built");
    return (*streamed)->cfg_forward()(in, check);
  };
  return g;
}

}  // namespace

WanPipeline::WanPipeline(const std::filesystem::path& dir, const WanStreamContext& context)
    : WanPipeline(dir, context, model::GeneratorOptions{}) {}

WanPipeline::WanPipeline(const std::filesystem::path& dir, const WanStreamContext& c,
                         const model::GeneratorOptions& options)
    : gen_(std::make_unique<model::WanGenerator>(dir, streamed_options(c, options, &streamed_))) {
  exec::StreamedDitOptions o;
  o.device_tier = c.device_tier;
  o.cuda_device = c.cuda_device;
  o.run = gen_->run_dtype();
  o.pack_dir = c.pack_dir;
  o.name = c.name;
  o.budget = c.budget;
  o.window_bytes = c.window_bytes;
  o.host_window_bytes = c.host_window_bytes;
  o.chunk_tokens = c.chunk_tokens;
  std::vector<std::filesystem::path> experts = {gen_->expert_dir(true)};
  if (gen_->two_experts()) experts.push_back(gen_->expert_dir(false));
  streamed_ = std::make_unique<exec::StreamedDit>(*c.pool, experts, o);
}

WanPipeline::~WanPipeline() = default;

void WanPipeline::begin_streamed_job(const JobState& state) {
  if (!streamed_) return;
  const model::GenState& st = cast(state).gen;
  const int done = st.completed_steps();
  std::vector<int> schedule = gen_->expert_of_step(st);
  schedule.erase(schedule.begin(), schedule.begin() + std::min<std::size_t>(schedule.size(), done));
  streamed_->begin_job(std::move(schedule), {done, st.seq_len});
}

nlohmann::json WanPipeline::stream_stats() const {
  return streamed_ ? streamed_->stats_json() : nlohmann::json();
}

void WanPipeline::validate(const JobSpec& spec) const { gen_->validate(to_request(spec)); }

std::unique_ptr<JobState> WanPipeline::prepare(const JobSpec& spec, CancelToken& token) {
  auto st = std::make_unique<WanJobState>();
  st->gen = gen_->prepare(to_request(spec), checker(token));
  begin_streamed_job(*st);  // the budget is checked before any step
  return st;
}

void WanPipeline::step(JobState& state, CancelToken& token) { gen_->step(cast(state).gen, checker(token)); }

int WanPipeline::total_steps(const JobState& state) const { return cast(state).gen.total_steps(); }

int WanPipeline::completed_steps(const JobState& state) const { return cast(state).gen.completed_steps(); }

Video WanPipeline::decode(JobState& state, CancelToken& token) {
  const model::GenState& st = cast(state).gen;
  if (streamed_) streamed_->end_job();
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

void WanPipeline::load_state(JobState& state, const StateBlobs& in) const {
  gen_->load_state(cast(state).gen, in);
  // The executor's schedule starts at the resumed step. (Pipeline::load_state is const:
  // the streamed DiT is per-pipeline mutable state, used by one job at a time.)
  const_cast<WanPipeline*>(this)->begin_streamed_job(state);
}

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

void register_wan_pipeline(PipelineRegistry& registry, const WanStreamContext& context) {
  if (context.pool == nullptr) throw Error(ErrorCode::kConfig, "wan pipeline: streamed mode without a memory pool");
  // Blob names are unique in the pool: one prefix per pipeline made (a model reloaded by
  // SIGHUP while its old pipeline still runs a job registers new names).
  auto counter = std::make_shared<std::atomic<int>>(0);
  auto make_on = [context, counter](const std::filesystem::path& dir, const DeviceSlot& slot) {
    WanStreamContext c = context;
    c.name = context.name + "." + dir.filename().string() + "." + std::to_string(counter->fetch_add(1));
    const std::vector<int> devs = c.pool->device_tiers();
    if (slot.index > 0 && static_cast<std::size_t>(slot.index) < devs.size()) {
      c.device_tier = devs[static_cast<std::size_t>(slot.index)];
      if (c.cuda_device >= 0) c.cuda_device = slot.index;
    }
    return std::unique_ptr<Pipeline>(std::make_unique<WanPipeline>(dir, c));
  };
  PipelineFactory f;
  f.name = "wan";
  f.probe = probe_wan_dir;
  f.make = [make_on](const std::filesystem::path& dir) { return make_on(dir, DeviceSlot{}); };
  f.make_on = make_on;
  f.encoder = encode_wan_video;
  registry.add_factory(std::move(f));
}

}  // namespace wand::sched
