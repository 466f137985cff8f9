// WanPipeline: the job runner's Pipeline (scheduler/pipeline.h) over the Wan2.2
// generators of model/generator.h (t2v-A14B, i2v-A14B, ti2v-5B and the tiny
// presets), and its registration in a PipelineRegistry.
//
//   sched::PipelineRegistry reg;
//   sched::register_wan_pipeline(reg);                  // factory "wan", mp4 encoder
//   reg.add_model("t2v", "/var/lib/wand/models/Wan2.2-T2V-A14B");
//   std::shared_ptr<sched::Pipeline> p = reg.pipeline("t2v");
//
// JobSpec -> GenRequest: the request as it is (common/job_request.h, one comment
// per field; the owner stays behind). validate() adds the model checks:
// sizes multiples of 16 (A14B) / 32 (ti2v), frames 4n + 1, task supported by
// the directory, image present for i2v and absent for t2v.
// Checkpoint blobs: "latent", "sampler", "rng", "cond" (see WanGenerator::save_state).
//
// Streamed mode (WanStreamContext): the DiT blocks are not loaded by the generator; a
// StreamedDit (scheduler/wan/streamed_dit.h) built once per pipeline streams them from
// the memory pool through a device tier, as GeneratorOptions::cfg_forward. The job's
// executor is built in prepare() (schedule from step 0, budget checked before any step),
// or in resume() (schedule from the resumed step; load_state() after prepare() builds it
// again); decode() ends it.
//
//   WanStreamContext c;  c.pool = &pool;  c.device_tier = pool.device_tier(0);
//   c.cuda_device = 0;  c.pack_dir = "/var/lib/wand/pack";  c.name = "t2v";
//   c.budget.budget_bytes = 24ull << 30;
//   WanPipeline p(dir, c);                              // streamed; WanPipeline(dir): resident
//
// Group mode (WanStreamContext::ranks non-empty, issue 7): one job over several cards. The
// same StreamedDit, with those ranks and the strategy, holds every rank's non-block weights
// and the shared stores, and builds per job (prepare(), resume(): schedule from the first
// step still to run) a ParallelDitRunner with the strategy (one card: a DitExecutor); the
// generator (sampler, VAE) runs on rank 0's device. The group is checked in the constructor (Error(kConfig):
// rank count vs strategy, heads % Ulysses degree, device tiers).
//
//   c.ranks = {{pool.device_tier(0), 0, b0}, {pool.device_tier(1), 1, b1}};  c.strategy = "cfg-parallel";
//   WanPipeline g(dir, c);
//
// Threads: one job at a time on the runner's thread (the generator is not
// thread-safe); validate() only reads the generator's config.
// This header is free of LibTorch (the daemon compiles without it).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/exec/exec_budget.h"
#include "scheduler/pipeline.h"
#include "scheduler/pipeline_registry.h"

namespace wand::memory {
class MemoryPool;
}
namespace at {
class Tensor;
}
namespace wand::model {
class WanGenerator;
class Tokenizer;
struct GeneratorOptions;
struct GenRequest;
struct GenState;
}  // namespace wand::model
namespace wand::sched::exec {
class StoreCache;
class T5Stream;
}  // namespace wand::sched::exec
namespace wand::sched {
class StreamedDit;
struct StreamedJobEnd;
}  // namespace wand::sched

namespace wand::sched {

// One card of a streamed pipeline spanning several cards (a DeviceGroup, issue 7).
struct WanStreamRank {
  int device_tier = -1;    // this card's pool tier
  int cuda_device = -1;    // -1: CPU (a CpuDeviceTier, a fake card)
  exec::DeviceBudget budget;
};

// What a streamed WanPipeline runs on (see StreamedDitOptions, streamed_dit.h, for the fields).
struct WanStreamContext {
  memory::MemoryPool* pool = nullptr;  // borrowed; must outlive the pipeline
  int device_tier = -1;                // the pool tier the blocks run from
  int cuda_device = -1;                // -1: CPU (a CpuDeviceTier)
  std::string run_dtype;               // "fp32" | "bf16" | "fp16"; "": bf16 on CUDA, fp32 on the CPU
  std::string pack_dir;                // where repacked blocks live
  std::string name = "wan";            // blob prefix, unique in the pool (model name, slot)
  exec::DeviceBudget budget;           // see Note [Streamed budget]
  std::uint64_t window_bytes = 0;      // 0: from the slots
  std::uint64_t host_window_bytes = 0; // 0: both experts stay in host memory
  std::int64_t chunk_tokens = -1;      // -1: from the budget
  // Several cards (issue 7): the ranks in rank order and the strategy's name
  // ("cfg-parallel", "ulysses-N", "cfg2xulysses-S"); empty ranks: one card, the
  // device_tier / cuda_device / budget above.
  std::vector<WanStreamRank> ranks;
  std::string strategy;
  // Model directory (lexically normal) -> its weights_dtype ("fp8", "run"; absent: "auto"),
  // the daemon config's models.<name>.weights_dtype (Note [fp8 stored dtype]).
  std::map<std::string, std::string> weights_by_dir;
  // The cards a runner slot or a group member names by its index (the daemon's
  // memory.devices[] entries, Note [Daemon slots] in daemon/daemon.h): each card's device tier,
  // CUDA ordinal and budget (its whole-card budget). Used by register_wan_pipeline(registry,
  // context) only; empty: index i is the pool's i-th device tier, with the budget above.
  std::map<int, WanStreamRank> cards;
  // Shared weight stores (scheduler/exec/store_cache.h): every pipeline made with the same
  // cache streams one host copy of each block of a model (Note [Shared weight stores],
  // streamed_dit.h). Null: the pipeline opens its own stores under `name`.
  // register_wan_pipeline(registry, context) makes one when this is null.
  std::shared_ptr<exec::StoreCache> stores;
};

class WanPipeline : public Pipeline {
 public:
  // Loads the directory's configs (weights are loaded on first use).
  explicit WanPipeline(const std::filesystem::path& dir);
  WanPipeline(const std::filesystem::path& dir, const model::GeneratorOptions& options);
  // Streamed mode. Loads the non-block weights and opens the weight stores (repacks once
  // when needed). Throws Error(kConfig) for a bad context.
  WanPipeline(const std::filesystem::path& dir, const WanStreamContext& context);
  WanPipeline(const std::filesystem::path& dir, const WanStreamContext& context,
              const model::GeneratorOptions& options);  // options.cfg_forward is replaced
  ~WanPipeline() override;

  void validate(const JobSpec& spec) const override;
  std::unique_ptr<JobState> prepare(const JobSpec& spec, CancelToken& token) override;
  void step(JobState& state, CancelToken& token) override;
  int total_steps(const JobState& state) const override;
  int completed_steps(const JobState& state) const override;
  std::vector<std::string> step_experts(const JobState& state) const override;  // A14B only
  Video decode(JobState& state, CancelToken& token) override;
  void save_state(const JobState& state, StateBlobs& out) const override;
  void load_state(JobState& state, const StateBlobs& in) const override;
  // WanGenerator::resume (no text or image encode) and the executor's job built once, from
  // the resumed step: a resumed job does none of prepare()'s work it would discard.
  std::unique_ptr<JobState> resume(const JobSpec& spec, const StateBlobs& in, CancelToken& token) override;

  model::WanGenerator& generator() { return *gen_; }
  bool streamed() const { return dit_ != nullptr; }
  // The streamed DiT (one card or a group); null in resident mode.
  StreamedDit* streamed_dit() { return dit_.get(); }
  bool grouped() const;  // streamed over several cards
  // StreamedDit::stats_json() (its "job": the executor's or the group runner's
  // stats_json()); null in resident mode. The runner's thread.
  nlohmann::json stream_stats() const;
  // The generator's state of a job of this pipeline (tests: the latents).
  static const model::GenState& gen_state(const JobState& state);

  // Streamed mode: the streamed umT5's counters (T5Stream::stats_json; null without it).
  nlohmann::json t5_stats() const;
  // Streamed mode: the umT5 encode of several texts in one pass over the streamed layers.
  std::vector<at::Tensor> encode_texts(const std::vector<std::string>& texts) const;
  // Streamed mode: the device bytes a VAE phase may take now (Note [VAE room]); 0 without a
  // budget. Throws Error(kOutOfMemory) when the budget leaves nothing.
  std::int64_t vae_room() const;
  // Kept free below the budget in a VAE phase (allocator rounding, fragmentation).
  static constexpr std::uint64_t kVaeMarginBytes = 512ull << 20;
  // The margin of Note [VAE room]: LibTorch's CUDA allocator rounds and fragments; the CPU
  // tiers of the tests have no such allocator (and budgets of a few MiB).
  static std::uint64_t vae_margin(int cuda_device);  // kVaeMarginBytes on CUDA, 0 on CPU tiers

 private:
  void begin_streamed_job(const JobState& state);
  void preflight(const model::GenRequest& req) const;  // Note [Job preflight]
  // The card a VAE phase runs on (the one-card pipeline's, or a group's rank 0), and what
  // stays on it through that phase besides `held` (Note [VAE room]).
  struct VaeCard {
    exec::DeviceBudget budget;
    int cuda;
    int tier;
  };
  VaeCard vae_card() const;
  std::uint64_t vae_fixed_bytes(const VaeCard& k, std::uint64_t held) const;

  std::shared_ptr<StreamedJobEnd> job_end_;  // Note [Streamed job end] (wan_pipeline.cpp)
  // Destroyed after gen_ (declared first); the context's cache lives while they do.
  std::shared_ptr<exec::StoreCache> stores_;
  std::unique_ptr<WanStreamContext> context_;       // streamed mode: the budget numbers
  std::unique_ptr<exec::T5Stream> t5_;              // streamed mode: umT5 through the pool
  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::unique_ptr<StreamedDit> dit_;
  std::unique_ptr<model::WanGenerator> gen_;
};

// True when `dir` has the file layout of a Wan2.2 release (A14B or ti2v-5B).
// A contiguous fp32 CPU tensor of `sizes` whose bytes are a fresh blob of the pool's host tier
// (named `who`.video.N), pinned while the tensor lives and dropped with it; undefined when the
// tier cannot make room (Note [Videos in the host tier], wan_pipeline.cpp).
at::Tensor host_tier_video(memory::MemoryPool& pool, const std::string& who, const std::vector<int64_t>& sizes);

bool probe_wan_dir(const std::filesystem::path& dir);
std::unique_ptr<Pipeline> make_wan_pipeline(const std::filesystem::path& dir);
// The model checks of a request from the directory's config.json alone, before the model is
// ever loaded (Note [Checks from the config], model/generator.cpp): PipelineFactory::validate.
// Throws Error(kBadRequest) naming the field.
void validate_wan_dir(const std::filesystem::path& dir, const JobSpec& spec);
// PipelineFactory::traits: variant, tasks, size multiple and defaults from config.json.
ModelTraits wan_dir_traits(const std::filesystem::path& dir);
// The output encoder: H.264 mp4 when built with libav, else the lossless AVI
// of model/video.h (format "mp4" or "avi").
EncodedVideo encode_wan_video(Video&& video);
// Adds the "wan" factory (probe_wan_dir, make_wan_pipeline, encode_wan_video, validate_wan_dir,
// wan_dir_traits).
void register_wan_pipeline(PipelineRegistry& registry);
// Adds the "wan" factory in streamed mode: every model's pipeline streams its blocks
// through `context` (name: "<context name>.<model dir name>.<n>", n counting the
// pipelines made; make_on streams through the slot's card; make_group builds a group
// pipeline over the group's member cards, in member order, with the group's strategy). A
// card is context.cards[index] (its tier, CUDA ordinal and budget; a group member not there
// is an Error(kConfig)), or without context.cards the pool's device tier of that position
// with the context's budget. Pipelines are built one at a time (Note [Serial pipeline
// builds], wan_pipeline.cpp). All of them share one store cache (context.stores, made here
// when null and host_window_bytes is 0: Note [Daemon host copy]).
void register_wan_pipeline(PipelineRegistry& registry, const WanStreamContext& context);

}  // namespace wand::sched
