#include "scheduler/wan/wan_pipeline.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>

#include "common/error.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/pipeline.h"
#include "model/video.h"
#include "scheduler/exec/store_cache.h"
#include "scheduler/exec/streamed_dit.h"
#include "scheduler/wan/group_dit.h"

namespace wand::sched {

// Note [Streamed job end]: a streamed job's executor / runner (its pins, its store
// lease, the allocator cap) is dropped by decode(), but a job that is cancelled, fails or
// is stopped for shutdown never decodes. So the job state ends it when destroyed (the
// runner drops the state when the job leaves it, whatever the outcome), if it is still
// the pipeline's current job: a job of another card on shared stores is not kept waiting
// behind a host-planning lease of a job that is gone (Note [Shared stores and host
// planning], store_cache.h). `end` outlives the pipeline (the pipeline clears it).
struct StreamedJobEnd {
  std::function<void()> end;   // ends the pipeline's current streamed job
  std::uint64_t current = 0;   // serial of the pipeline's current streamed job
};

namespace {

struct WanJobState : JobState {
  model::GenState gen;
  std::shared_ptr<StreamedJobEnd> end;
  std::uint64_t serial = 0;
  ~WanJobState() override {
    if (end && end->end && end->current == serial) {
      try {
        end->end();
      } catch (const std::exception&) {  // never throw from a destructor
      }
    }
  }
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

// GeneratorOptions for a streamed pipeline: the device of the tier (group mode: rank 0's),
// the run dtype, and a cfg_forward that calls the StreamedDit or GroupDit built right
// after the generator.
model::GeneratorOptions streamed_options(const WanStreamContext& c, model::GeneratorOptions g,
                                         std::unique_ptr<exec::StreamedDit>* streamed,
                                         std::unique_ptr<GroupDit>* group) {
  if (c.pool == nullptr) throw Error(ErrorCode::kConfig, "wan pipeline: streamed mode without a memory pool");
  const int cuda = c.ranks.empty() ? c.cuda_device : c.ranks[0].cuda_device;
  g.device = cuda < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda));
  if (!c.run_dtype.empty()) {
    g.run_dtype = model::parse_run_dtype(c.run_dtype);
  } else if (!g.run_dtype) {
    g.run_dtype = cuda < 0 ? model::RunDtype::kFloat32 : model::RunDtype::kBFloat16;
  }
  g.cfg_forward = [streamed, group](const model::StepForwardInputs& in, const model::CancelCheck& check) {
    if (*group) return (*group)->cfg_forward()(in, check);
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
    : stores_(c.stores),
      gen_(std::make_unique<model::WanGenerator>(dir, streamed_options(c, options, &streamed_, &group_))) {
  std::vector<std::filesystem::path> experts = {gen_->expert_dir(true)};
  if (gen_->two_experts()) experts.push_back(gen_->expert_dir(false));
  if (!c.ranks.empty()) {  // group mode
    GroupDitOptions o;
    for (const WanStreamRank& r : c.ranks) o.ranks.push_back({r.device_tier, r.cuda_device, r.budget});
    o.strategy = c.strategy;
    o.run = gen_->run_dtype();
    o.pack_dir = c.pack_dir;
    o.name = c.name;
    o.window_bytes = c.window_bytes;
    o.chunk_tokens = c.chunk_tokens;
    o.stores = c.stores.get();
    group_ = std::make_unique<GroupDit>(*c.pool, experts, o);
    if (c.host_window_bytes > 0) {  // StreamedBlocks plans the device tiers only (group_dit.h)
      log::get("sched")->warn("wan pipeline '{}': host_window_bytes {} is ignored in group mode ({}): blocks stay in "
                              "host memory once read",
                              c.name, c.host_window_bytes, c.strategy);
    }
    return;
  }
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
  o.stores = c.stores.get();
  streamed_ = std::make_unique<exec::StreamedDit>(*c.pool, experts, o);
}

WanPipeline::~WanPipeline() {
  if (job_end_) job_end_->end = nullptr;  // job states that outlive the pipeline do nothing
}

void WanPipeline::begin_streamed_job(const JobState& state) {
  if (!streamed_ && !group_) return;
  if (!job_end_) {
    job_end_ = std::make_shared<StreamedJobEnd>();
    job_end_->end = [this] {
      if (streamed_) streamed_->end_job();
      if (group_) group_->end_job();
    };
  }
  auto& ws = const_cast<WanJobState&>(cast(state));  // Note [Streamed job end]
  ws.end = job_end_;
  ws.serial = ++job_end_->current;
  const model::GenState& st = cast(state).gen;
  const int done = st.completed_steps();
  std::vector<int> schedule = gen_->expert_of_step(st);
  schedule.erase(schedule.begin(), schedule.begin() + std::min<std::size_t>(schedule.size(), done));
  if (group_) {
    group_->begin_job(std::move(schedule), {done, st.seq_len});
  } else {
    streamed_->begin_job(std::move(schedule), {done, st.seq_len});
  }
}

nlohmann::json WanPipeline::stream_stats() const {
  if (group_) return group_->stats_json();
  return streamed_ ? streamed_->stats_json() : nlohmann::json();
}

const model::GenState& WanPipeline::gen_state(const JobState& state) { return cast(state).gen; }

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

std::vector<std::string> WanPipeline::step_experts(const JobState& state) const {
  if (!gen_->two_experts()) return {};
  std::vector<std::string> out;
  for (int e : gen_->expert_of_step(cast(state).gen)) out.push_back(e == 0 ? "high-noise" : "low-noise");
  return out;
}

Video WanPipeline::decode(JobState& state, CancelToken& token) {
  const model::GenState& st = cast(state).gen;
  if (streamed_) streamed_->end_job();
  if (group_) group_->end_job();
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

void validate_wan_dir(const std::filesystem::path& dir, const JobSpec& spec) {
  model::WanGenerator::validate_request(model::WanGenerator::read_dir_config(dir), to_request(spec));
}

ModelTraits wan_dir_traits(const std::filesystem::path& dir) {
  const model::RequestRules r = model::WanGenerator::rules_of(model::WanGenerator::read_dir_config(dir));
  ModelTraits t;
  t.variant = r.variant;
  t.tasks = r.tasks;
  t.size_multiple = r.size_multiple;
  t.default_width = r.default_width;
  t.default_height = r.default_height;
  t.default_frames = r.default_frames;
  t.default_steps = r.default_steps;
  t.fps = r.fps;
  return t;
}

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
  PipelineFactory f;
  f.name = "wan";
  f.probe = probe_wan_dir;
  f.make = make_wan_pipeline;
  f.encoder = encode_wan_video;
  f.validate = validate_wan_dir;
  f.traits = wan_dir_traits;
  registry.add_factory(std::move(f));
}

void register_wan_pipeline(PipelineRegistry& registry, const WanStreamContext& c0) {
  if (c0.pool == nullptr) throw Error(ErrorCode::kConfig, "wan pipeline: streamed mode without a memory pool");
  WanStreamContext context = c0;
  // One store cache for every pipeline of this factory: one host copy of each model's
  // blocks whatever the number of cards (Note [Shared weight stores], streamed_dit.h).
  if (!context.stores) context.stores = std::make_shared<exec::StoreCache>(*context.pool, context.name + ".shared");
  // Pipeline names are unique: one per pipeline made (logs; the blob prefix of stores
  // opened without a cache).
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
  // A group: rank q streams through the device tier of member q's index (when the pool has
  // it) with the context's budget; the strategy is the group's.
  f.make_group = [context, counter](const std::filesystem::path& dir, const DeviceGroup& group) {
    WanStreamContext c = context;
    c.name = context.name + "." + dir.filename().string() + "." + std::to_string(counter->fetch_add(1));
    const std::vector<int> devs = c.pool->device_tiers();
    c.ranks.clear();
    for (const DeviceSlot& m : group.members) {
      if (m.index < 0 || static_cast<std::size_t>(m.index) >= devs.size()) {
        throw Error(ErrorCode::kConfig, "wan pipeline: group " + group.key() + " names card " +
                                            std::to_string(m.index) + " but the pool has " +
                                            std::to_string(devs.size()) + " device tiers");
      }
      WanStreamRank r;
      r.device_tier = devs[static_cast<std::size_t>(m.index)];
      r.cuda_device = context.cuda_device >= 0 ? m.index : -1;
      r.budget = context.budget;  // as make_on: the context's budget on every card
      c.ranks.push_back(r);
    }
    c.strategy = group.strategy;
    return std::unique_ptr<Pipeline>(std::make_unique<WanPipeline>(dir, c));
  };
  f.encoder = encode_wan_video;
  f.validate = validate_wan_dir;
  f.traits = wan_dir_traits;
  registry.add_factory(std::move(f));
}

}  // namespace wand::sched
