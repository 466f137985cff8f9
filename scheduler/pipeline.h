// Pipeline: the step-wise interface between the job runner and a model. The
// runner drives it one denoising step at a time so that it can checkpoint at
// every step boundary and resume bitwise identically after a crash:
//
//   auto state = checkpoint ? pipeline.resume(spec, checkpoint->blobs, token)   // restored
//                           : pipeline.prepare(spec, token);  // text encoding, initial noise
//   while (pipeline.completed_steps(*state) < pipeline.total_steps(*state)) {
//     pipeline.step(*state, token);                   // checks token between blocks
//     StateBlobs blobs; pipeline.save_state(*state, blobs);   // latents, sampler, RNG
//     store.save(job, step, blobs);
//   }
//   Video video = pipeline.decode(*state, token);     // RGB uint8 [F, H, W, 3]
//   EncodedVideo file = encoder(video);               // mp4 or a lossless fallback
//
// The state is opaque to the runner: a pipeline subclasses JobState and keeps
// its tensors there; save_state turns everything needed to continue (latents,
// sampler history, RNG state, step index) into named byte blobs. resume() gives the
// state of prepare() then load_state() (load_state is called on a state fresh from
// prepare() for the same spec), without the work the checkpoint makes useless.
//
// Threads: one Pipeline object serves one job at a time, on the runner's
// thread; validate() may be called from any thread (it must not touch state).
// With several device slots (job-parallel, scheduler/job_runner.h) the registry
// makes one Pipeline per (model, slot): each runs on its slot's worker thread,
// concurrently with the others, and must keep its device use within
// DeviceSlot::vram_budget_bytes.
// This header is free of LibTorch on purpose (the daemon compiles without it).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/cancel_token.h"
#include "scheduler/job_spec.h"

namespace wand::sched {

using ByteBuffer = std::vector<std::uint8_t>;
// Named byte blobs of a checkpoint ("latent", "sampler", "rng", ...).
using StateBlobs = std::map<std::string, ByteBuffer>;

// Decoded video: RGB uint8, [frames, height, width, 3], row-major.
struct Video {
  int frames = 0;
  int height = 0;
  int width = 0;
  double fps = 16.0;
  ByteBuffer rgb;
};

// One device a JobRunner worker drives (job-parallel): a GPU, or a fake device
// in tests. The budget is everything the job may use on that device.
//
//   DeviceSlot{0, 24ull << 30, "cuda:0"}     // a 24 GiB RTX 4090
//   DeviceSlot{}                             // the default: index 0, no budget limit
struct DeviceSlot {
  int index = 0;                        // CUDA ordinal (or fake device number)
  std::uint64_t vram_budget_bytes = 0;  // 0: unlimited (no placement check)
  std::string name = "default";         // for logs and errors ("cuda:1", "fake-12g")
};

// One job on several cards at once (issue 7: CFG-parallel, Ulysses, CFG x Ulysses): the
// member cards in rank order and the strategy's name (scheduler/multigpu/parallel_strategy.h:
// "cfg-parallel", "ulysses-N", "cfg2xulysses-S"). members.size() is the strategy's rank
// count. A JobRunner runs a grouped job on the first member's worker while the other
// members' workers take no job (Note [Card groups], job_runner.h).
//
//   DeviceGroup{{{0, 24ull << 30, "cuda:0"}, {1, 24ull << 30, "cuda:1"}}, "cfg-parallel"}
struct DeviceGroup {
  std::vector<DeviceSlot> members;
  std::string strategy;
  // "cfg-parallel@0,1": the registry's cache key and the name in logs and placements.
  std::string key() const {
    std::string k = strategy + "@";
    for (std::size_t i = 0; i < members.size(); ++i) k += (i ? "," : "") + std::to_string(members[i].index);
    return k;
  }
};

// An encoded video file.
struct EncodedVideo {
  std::string format;  // file extension without the dot: "mp4", "wandrgb", ...
  ByteBuffer bytes;
};

// Turns frames into file bytes. model/ provides the mp4 one; tests use
// encode_wandrgb (scheduler/fake_pipeline.h).
// Takes the frames (they may be moved into the encoder: no second copy on the host).
using VideoEncoder = std::function<EncodedVideo(Video&&)>;

// Per-job pipeline state; subclassed by each pipeline.
class JobState {
 public:
  virtual ~JobState();
};

class Pipeline {
 public:
  virtual ~Pipeline();

  // Model-specific checks (sizes divisible by the VAE stride, task supported).
  // Throws Error(kBadRequest) naming the field. Default: accepts.
  virtual void validate(const JobSpec& spec) const;
  // Text encoding and initial noise for a job. May check the token.
  virtual std::unique_ptr<JobState> prepare(const JobSpec& spec, CancelToken& token) = 0;
  // One denoising step; checks the token between blocks (throws Error(kCancelled)).
  // When it throws, the state is discarded by the caller.
  virtual void step(JobState& state, CancelToken& token) = 0;
  virtual int total_steps(const JobState& state) const = 0;
  virtual int completed_steps(const JobState& state) const = 0;
  // The expert each step runs on ("high-noise", "low-noise"), one label per step of the job,
  // or empty when there is one model (the runner shows "switching expert" at a change;
  // Note [Job stages], job_runner.cpp). Called after prepare() / load_state(). Default: empty.
  virtual std::vector<std::string> step_experts(const JobState& state) const;
  // Latents -> frames, once every step is done.
  virtual Video decode(JobState& state, CancelToken& token) = 0;
  // Everything needed to continue after completed_steps(state), as named blobs.
  virtual void save_state(const JobState& state, StateBlobs& out) const = 0;
  // Restores what save_state wrote into a state fresh from prepare() of the same
  // spec. Throws Error(kModelFormat) naming the blob when one is missing or wrong.
  virtual void load_state(JobState& state, const StateBlobs& in) const = 0;
  // A job that continues from a checkpoint: the state prepare(spec) then load_state(in)
  // gives, and the same errors. A pipeline whose prepare() does work the checkpoint holds
  // (the Wan pipeline: the text and image encodes, its executor's job from step 0) skips
  // it here. Default: prepare() then load_state().
  virtual std::unique_ptr<JobState> resume(const JobSpec& spec, const StateBlobs& in, CancelToken& token);
};

}  // namespace wand::sched
