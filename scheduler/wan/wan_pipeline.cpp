#include "scheduler/wan/wan_pipeline.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>

#include "common/error.h"
#include "model/weight_storage.h"
#include "common/log.h"
#include "memory/memory_pool.h"
#include "model/formats/part_sources.h"
#include "model/generator.h"
#include "model/generator_text.h"
#include "model/lora.h"
#include "model/tokenizer.h"
#include "model/video.h"
#include "scheduler/exec/device_runtime.h"
#include "scheduler/exec/store_cache.h"
#include "model/formats/model_layout.h"
#include "scheduler/exec/t5_stream.h"
#include "scheduler/wan/streamed_dit.h"

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
  static_cast<JobRequest&>(r) = spec;  // one definition of the request (common/job_request.h)
  r.lora_files = spec.lora_files;
  return r;
}

model::CancelCheck checker(CancelToken& token) {
  return [&token] { token.throw_if_cancelled(); };
}

}  // namespace

// Note [Videos in the host tier]: the VAE phases hold videos on the host: the i2v
// conditioning video before the encode and the decoded video ([3, F, H, W] fp32: 0.9 GB at
// 1280x720x81, 1.3 GB at 1280x704x121). In those phases the host tier holds cached copies of
// weights no job step pins (the text phase is over; end_job ran before the decode), so the
// videos borrow their bytes from the tier (a fresh blob, pinned while the tensor lives and
// dropped with it) instead of growing the daemon past memory.host; the cached blocks they
// displace are read again by the next job that needs them. When the tier cannot make room
// (jobs of other cards pin their blocks), the phase allocates from the heap as before, and
// says so in the log. The uint8 frames (a quarter of the decoded video) are then written one
// frame at a time (WanGenerator::to_uint8 into the Video's buffer).
at::Tensor host_tier_video(memory::MemoryPool& pool, const std::string& who, const std::vector<int64_t>& sizes) {
  std::uint64_t bytes = sizeof(float);
  for (int64_t d : sizes) bytes *= static_cast<std::uint64_t>(d);
  static std::atomic<unsigned> seq{0};
  const memory::BlobId id = pool.create_blob(who + ".video." + std::to_string(seq++), bytes);
  std::shared_ptr<memory::PinnedCopy> pin;
  try {
    pin = std::make_shared<memory::PinnedCopy>(pool.acquire(id, pool.host_tier()));
  } catch (const std::exception& e) {
    pool.drop_blob(id);
    log::get("sched")->info("video in heap memory pipeline={} bytes={} (host tier: {})", who,
                            format_bytes(bytes), e.what());
    return {};
  }
  memory::MemoryPool* p = &pool;
  return at::from_blob(
      pin->data(), sizes,
      [p, id, pin](void*) {
        try {
          pin->reset();
          p->drop_blob(id);
        } catch (const std::exception&) {  // a deleter never throws; the blob is freed with the pool
        }
      },
      at::TensorOptions().dtype(at::kFloat));
}

namespace {

}  // namespace

WanPipeline::WanPipeline(const std::filesystem::path& dir)
    : gen_(std::make_unique<model::WanGenerator>(dir)) {}

WanPipeline::WanPipeline(const std::filesystem::path& dir, const model::GeneratorOptions& options)
    : gen_(std::make_unique<model::WanGenerator>(dir, options)) {}

namespace {

// GeneratorOptions for a streamed pipeline: the device of the tier (group mode: rank 0's),
// the run dtype, and a cfg_forward that calls the StreamedDit built right after the generator.
model::GeneratorOptions streamed_options(const WanStreamContext& c, model::GeneratorOptions g,
                                         std::unique_ptr<StreamedDit>* dit, const WanPipeline* self) {
  if (c.pool == nullptr) throw Error(ErrorCode::kConfig, "wan pipeline: streamed mode without a memory pool");
  const int cuda = c.ranks.empty() ? c.cuda_device : c.ranks[0].cuda_device;
  g.device = cuda < 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda));
  if (!c.run_dtype.empty()) {
    g.run_dtype = model::parse_run_dtype(c.run_dtype);
  } else if (!g.run_dtype) {
    g.run_dtype = cuda < 0 ? model::RunDtype::kFloat32 : model::RunDtype::kBFloat16;
  }
  g.cfg_forward = [dit](const model::StepForwardInputs& in, const model::CancelCheck& check) {
    if (!*dit) throw Error(ErrorCode::kInternal, "wan pipeline: the streamed DiT is not built");
    return (*dit)->cfg_forward()(in, check);
  };
  // Note [One job path]: umT5 streams through the pool (both prompts per layer) and the VAE
  // phases run inside what the card budget leaves, for every streamed job the daemon runs
  // and every benchmark that builds its job through WanPipeline.
  if (!g.text_encoder && !g.text_encoder_many) {
    g.text_encoder_many = [self](const std::vector<std::string>& texts) { return self->encode_texts(texts); };
  }
  if (!g.vae_budget) g.vae_budget = [self] { return self->vae_room(); };
  if (!g.host_video) {
    memory::MemoryPool* pool = c.pool;
    const std::string who = c.name;
    g.host_video = [pool, who](const std::vector<int64_t>& sizes) { return host_tier_video(*pool, who, sizes); };
  }
  if (!g.on_phase) {
    const std::string name = c.name;
    g.on_phase = [name](const char* phase) {
      static thread_local std::string last;  // one job at a time per runner thread
      if (last == phase) return;
      last = phase;
      log::get("sched")->info("job phase {} pipeline={}", phase, name);
    };
  }
  return g;
}

}  // namespace

WanPipeline::WanPipeline(const std::filesystem::path& dir, const WanStreamContext& context)
    : WanPipeline(dir, context, model::GeneratorOptions{}) {}

WanPipeline::WanPipeline(const std::filesystem::path& dir, const WanStreamContext& c,
                         const model::GeneratorOptions& options)
    : stores_(c.stores),
      context_(std::make_unique<WanStreamContext>(c)),
      gen_(std::make_unique<model::WanGenerator>(dir, streamed_options(c, options, &dit_, this))) {
  context_->stores.reset();  // kept in stores_; the copy is for the budget numbers
  // umT5 from its checkpoint through the pool (the release .pth or a diffusers text_encoder/:
  // Note [Diffusers parts]), on the card the generator runs on (group: rank 0), unless the
  // caller brings its own text encoder (tests). Built here, so that a model directory without
  // its umT5 fails at load, naming it.
  if (!options.text_encoder && !options.text_encoder_many) {
    const model::formats::ModelLayout layout = model::formats::detect_model_layout(dir);
    std::shared_ptr<const model::TensorSource> t5_src = model::open_part(layout.text_encoder());
    const std::filesystem::path tok = layout.tokenizer_dir();
    exec::T5StreamOptions to;
    // Numbered: two pipelines of one name may share the pool for a while (a resumed job's
    // pipeline is built while the first one still exists), and blob names are unique.
    static std::atomic<std::uint64_t> t5_instances{0};
    to.name = c.name + ".t5#" + std::to_string(t5_instances.fetch_add(1));
    to.device_tier = c.ranks.empty() ? c.device_tier : c.ranks[0].device_tier;
    to.cuda_device = c.ranks.empty() ? c.cuda_device : c.ranks[0].cuda_device;
    to.run = gen_->run_dtype();
    t5_ = std::make_unique<exec::T5Stream>(std::move(t5_src), *c.pool, to);
    tokenizer_ = std::make_unique<model::Tokenizer>(model::Tokenizer::load(tok.string()));
  }
  std::vector<std::filesystem::path> experts = {gen_->expert_dir(true)};
  if (gen_->two_experts()) experts.push_back(gen_->expert_dir(false));
  StreamedDitOptions o;
  if (c.ranks.empty()) {  // one card
    o.ranks.push_back({c.device_tier, c.cuda_device, c.budget});
  } else {  // a group (issue 7)
    for (const WanStreamRank& r : c.ranks) o.ranks.push_back({r.device_tier, r.cuda_device, r.budget});
    o.strategy = c.strategy;
  }
  o.run = gen_->run_dtype();
  o.pack_dir = c.pack_dir;
  o.name = c.name;
  o.window_bytes = c.window_bytes;
  o.host_window_bytes = c.host_window_bytes;
  o.chunk_tokens = c.chunk_tokens;
  o.stores = c.stores.get();
  if (auto w = c.weights_by_dir.find(dir.lexically_normal().string()); w != c.weights_by_dir.end()) {
    o.weights = model::parse_weights_dtype(w->second, "model " + dir.string() + ": weights_dtype");
  }
  dit_ = std::make_unique<StreamedDit>(*c.pool, experts, o);
}

WanPipeline::~WanPipeline() {
  if (job_end_) job_end_->end = nullptr;  // job states that outlive the pipeline do nothing
}

bool WanPipeline::grouped() const { return dit_ != nullptr && dit_->num_ranks() > 1; }

void WanPipeline::begin_streamed_job(const JobState& state) {
  if (!dit_) return;
  if (!job_end_) {
    job_end_ = std::make_shared<StreamedJobEnd>();
    job_end_->end = [this] {
      if (dit_) dit_->end_job();
    };
  }
  auto& ws = const_cast<WanJobState&>(cast(state));  // Note [Streamed job end]
  ws.end = job_end_;
  ws.serial = ++job_end_->current;
  const model::GenState& st = cast(state).gen;
  const int done = st.completed_steps();
  std::vector<int> schedule = gen_->expert_of_step(st);
  schedule.erase(schedule.begin(), schedule.begin() + std::min<std::size_t>(schedule.size(), done));
  // Note [Guidance 1] (model/sampler_schedule.h): one residual stream when no step left guides.
  const std::vector<bool> uncond = gen_->uncond_of_step(st);
  bool any_uncond = false;
  for (std::size_t k = static_cast<std::size_t>(done); k < uncond.size(); ++k) any_uncond = any_uncond || uncond[k];
  dit_->begin_job(std::move(schedule), {done, st.seq_len, any_uncond, model::lora_card_bytes(st.loras, gen_->run_dtype())});
}

nlohmann::json WanPipeline::stream_stats() const {
  return dit_ ? dit_->stats_json() : nlohmann::json();
}

const model::GenState& WanPipeline::gen_state(const JobState& state) { return cast(state).gen; }

void WanPipeline::validate(const JobSpec& spec) const { gen_->validate(to_request(spec)); }

nlohmann::json WanPipeline::t5_stats() const { return t5_ ? t5_->stats_json() : nlohmann::json(); }

std::vector<at::Tensor> WanPipeline::encode_texts(const std::vector<std::string>& texts) const {
  if (!t5_ || !tokenizer_) throw Error(ErrorCode::kInternal, "wan pipeline: the streamed umT5 is not built");
  return t5_->encode_texts(*tokenizer_, texts);
}

std::uint64_t WanPipeline::vae_margin(int cuda_device) { return cuda_device >= 0 ? kVaeMarginBytes : 0; }

WanPipeline::VaeCard WanPipeline::vae_card() const {
  const WanStreamContext& c = *context_;
  if (c.ranks.empty()) return {c.budget, c.cuda_device, c.device_tier};
  return {c.ranks[0].budget, c.ranks[0].cuda_device, c.ranks[0].device_tier};
}

std::uint64_t WanPipeline::vae_fixed_bytes(const VaeCard& k, std::uint64_t held) const {
  return k.budget.context_bytes + context_->pool->tier(k.tier).bytes_capacity() + held + vae_margin(k.cuda);
}

// Note [VAE room]: the card's budget less what stays on it through a VAE phase: the CUDA
// context, the device tier (one region reserved at start: its slots are idle during the VAE
// phases, but LibTorch's allocator cannot borrow them, so the tiles are sized around them),
// and what LibTorch holds then (the DiTs' non-block weights, the job's latents), less a
// margin for the allocator's rounding and fragmentation. Measured on the card (after
// returning LibTorch's cached blocks) when it is a GPU; on the CPU tiers of the tests, the
// non-block weights stand for it. 0: no budget, the VAE runs untiled.
std::int64_t WanPipeline::vae_room() const {
  const VaeCard k = vae_card();
  const exec::DeviceBudget& b = k.budget;
  if (b.budget_bytes == 0) return 0;
  std::uint64_t held = 0;
  if (k.cuda >= 0) {
    exec::empty_caching_allocator();
    held = exec::caching_allocator_reserved(k.cuda);
  } else if (dit_) {
    held = dit_->nonblock_bytes();
  }
  const std::uint64_t fixed = vae_fixed_bytes(k, held);
  if (fixed >= b.budget_bytes) {
    throw Error(ErrorCode::kOutOfMemory,
                "the VAE has no room on the card: budget " + format_bytes(b.budget_bytes) + " = context " +
                    format_bytes(b.context_bytes) + " + device tier " +
                    format_bytes(context_->pool->tier(k.tier).bytes_capacity()) + " + held " + format_bytes(held) +
                    " + margin " + format_bytes(vae_margin(k.cuda)) + " leaves nothing (make the device tier smaller)");
  }
  return static_cast<std::int64_t>(b.budget_bytes - fixed);
}

// Note [Job preflight]: before any phase runs, a streamed job is checked against the card's
// budget phase by phase: the steps (the DiT's card plan: slots, activation room, chunk) and
// the decode (its smallest tiles in the room Note [VAE room] predicts, with the non-block
// weights standing for what LibTorch holds). A job that cannot fit fails here, naming the
// phase and the bytes, instead of after minutes of text encoding and steps.
void WanPipeline::preflight(const model::GenRequest& req) const {
  const model::GenGeometry g = gen_->geometry(req);
  const std::string job = std::to_string(g.width) + "x" + std::to_string(g.height) + "x" + std::to_string(g.frames);
  if (dit_) {
    try {
      bool uncond = false;  // Note [Guidance 1]: one stream when no step guides
      for (bool u : gen_->uncond_of_step(req)) uncond = uncond || u;
      dit_->plan_job(g.seq_len, uncond);
    } catch (const Error& e) {
      throw Error(ErrorCode::kOutOfMemory, "job " + job + " does not fit the card (phase steps): " + e.what());
    }
  }
  const VaeCard k = vae_card();
  const exec::DeviceBudget& b = k.budget;
  if (b.budget_bytes == 0) return;
  const std::uint64_t fixed = vae_fixed_bytes(k, dit_ ? dit_->nonblock_bytes() : 0);
  const std::int64_t room = fixed < b.budget_bytes ? static_cast<std::int64_t>(b.budget_bytes - fixed) : 1;
  const model::VaeDecodePlan p = gen_->plan_decode(g, room);
  if (!p.fits) {
    throw Error(ErrorCode::kOutOfMemory, "job " + job + " does not fit the card (phase decode): its smallest VAE tiles need " +
                                             format_bytes(static_cast<std::uint64_t>(p.est_total_bytes)) +
                                             " and the budget " + format_bytes(b.budget_bytes) +
                                             (fixed < b.budget_bytes ? " leaves " + format_bytes(b.budget_bytes - fixed)
                                                                     : std::string(" leaves nothing")) +
                                             " after the context, the device tier, the non-block weights and the "
                                             "allocator margin " + format_bytes(vae_margin(k.cuda)));
  }
}

std::unique_ptr<JobState> WanPipeline::prepare(const JobSpec& spec, CancelToken& token) {
  auto st = std::make_unique<WanJobState>();
  const model::GenRequest req = to_request(spec);
  if (streamed()) preflight(req);
  st->gen = gen_->prepare(req, checker(token));
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
  if (dit_) dit_->end_job();
  const at::Tensor video = gen_->decode(st, checker(token));  // [3, F, H, W] fp32 on the host
  Video v;
  v.frames = static_cast<int>(video.size(1));
  v.height = static_cast<int>(video.size(2));
  v.width = static_cast<int>(video.size(3));
  v.fps = gen_->fps();
  v.rgb.resize(static_cast<std::size_t>(video.numel()));  // [F, H, W, 3] uint8
  model::WanGenerator::to_uint8(video, v.rgb.data());
  return v;
}

void WanPipeline::save_state(const JobState& state, StateBlobs& out) const {
  for (auto& [name, bytes] : gen_->save_state(cast(state).gen)) out[name] = std::move(bytes);
}

std::unique_ptr<JobState> WanPipeline::resume(const JobSpec& spec, const StateBlobs& in, CancelToken& token) {
  auto st = std::make_unique<WanJobState>();
  const model::GenRequest req = to_request(spec);
  if (streamed()) preflight(req);
  st->gen = gen_->resume(req, in, checker(token));
  begin_streamed_job(*st);  // once, from the resumed step; the budget is checked before any step
  return st;
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
  return model::WanGenerator::traits_of(model::WanGenerator::read_dir_config(dir));
}

std::unique_ptr<Pipeline> make_wan_pipeline(const std::filesystem::path& dir) {
  return std::make_unique<WanPipeline>(dir);
}

EncodedVideo encode_wan_video(Video&& video) {
  model::VideoFrames f;
  f.frames = video.frames;
  f.height = video.height;
  f.width = video.width;
  f.rgb = std::move(video.rgb);
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
  // Note [Daemon host copy]: every pipeline of a model (one per card, one per card group)
  // takes its weight stores from one StoreCache, so the pool's host tier holds ONE pinned copy
  // of each block whatever the number of cards (issue 7 item 1; before, each card's pipeline
  // registered its own blobs: two cards, two copies; Note [Shared weight stores],
  // streamed_dit.h). With host_window_bytes set, a job plans the host tier for its own
  // schedule, which a concurrent job of the same model on another card cannot share (Note
  // [Shared stores and host planning], scheduler/exec/store_cache.h: it would be refused);
  // there each pipeline keeps its own stores (unless the caller gives a cache), and the host
  // window bounds each.
  if (!context.stores && context.host_window_bytes == 0) {
    context.stores = std::make_shared<exec::StoreCache>(*context.pool, context.name + ".shared");
  }
  // Note [Serial pipeline builds]: the cards' workers build their pipelines at once on the
  // first jobs, and a pipeline's construction may repack the release into pack_dir; two builds
  // of one model repacking the same file race on its temporary name (measured: "io: weight
  // store: rename ....bin.tmp -> ....bin: No such file or directory" on 2 CPU cards). So builds
  // are serial (one mutex for all): the first repacks, the others reuse the packed file (one
  // copy on disk for every card). The counter makes the pipeline names unique (the blob
  // prefix of stores opened without a cache; logs).
  struct Builds {
    std::mutex mu;
    int made = 0;  // guarded by mu
  };
  auto builds = std::make_shared<Builds>();
  auto named = [](const WanStreamContext& c, const std::filesystem::path& dir, Builds& b) {
    WanStreamContext out = c;
    out.name = c.name + "." + dir.filename().string() + "." + std::to_string(b.made++);
    return out;
  };
  auto make_on = [context, builds, named](const std::filesystem::path& dir, const DeviceSlot& slot) {
    std::lock_guard<std::mutex> lock(builds->mu);  // Note [Serial pipeline builds]
    WanStreamContext c = named(context, dir, *builds);
    if (!c.cards.empty()) {
      // The slot's card; a slot that names none (the default slot of make) keeps the context's.
      auto card = c.cards.find(slot.index);
      if (card != c.cards.end()) {
        c.device_tier = card->second.device_tier;
        c.cuda_device = card->second.cuda_device;
        c.budget = card->second.budget;
      }
    } else {
      const std::vector<int> devs = c.pool->device_tiers();
      if (slot.index > 0 && static_cast<std::size_t>(slot.index) < devs.size()) {
        c.device_tier = devs[static_cast<std::size_t>(slot.index)];
        if (c.cuda_device >= 0) c.cuda_device = slot.index;
      }
    }
    return std::unique_ptr<Pipeline>(std::make_unique<WanPipeline>(dir, c));
  };
  PipelineFactory f;
  f.name = "wan";
  f.probe = probe_wan_dir;
  f.make = [make_on](const std::filesystem::path& dir) { return make_on(dir, DeviceSlot{}); };
  f.make_on = make_on;
  // A group: rank q streams through member q's card (its budget); the generator (sampler,
  // VAE) runs on the first member's; the strategy is the group's.
  f.make_group = [context, builds, named](const std::filesystem::path& dir, const DeviceGroup& group) {
    std::lock_guard<std::mutex> lock(builds->mu);  // Note [Serial pipeline builds]
    WanStreamContext c = named(context, dir, *builds);
    const std::vector<int> devs = c.pool->device_tiers();
    c.ranks.clear();
    for (const DeviceSlot& m : group.members) {
      WanStreamRank r;
      if (!c.cards.empty()) {
        auto card = c.cards.find(m.index);
        if (card == c.cards.end()) {
          throw Error(ErrorCode::kConfig, "card group " + group.key() + ": card " + std::to_string(m.index) +
                                              " is not in memory.devices[]");
        }
        r = card->second;
      } else {
        if (m.index < 0 || static_cast<std::size_t>(m.index) >= devs.size()) {
          throw Error(ErrorCode::kConfig, "wan pipeline: group " + group.key() + " names card " +
                                              std::to_string(m.index) + " but the pool has " +
                                              std::to_string(devs.size()) + " device tiers");
        }
        r.device_tier = devs[static_cast<std::size_t>(m.index)];
        r.cuda_device = context.cuda_device >= 0 ? m.index : -1;
        r.budget = context.budget;  // as make_on: the context's budget on every card
      }
      c.ranks.push_back(r);
    }
    if (!c.ranks.empty()) {
      c.device_tier = c.ranks.front().device_tier;
      c.cuda_device = c.ranks.front().cuda_device;
      c.budget = c.ranks.front().budget;
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
