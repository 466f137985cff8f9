// FakePipeline: a deterministic CPU stand-in for a Wan pipeline, for tests of the
// queue, runner and daemon. No LibTorch. A model directory holding the marker
// file wand-fake-model.json selects it:
//
//   {"step_ms": 20, "blocks": 4, "fps": 16}
//
// Latent: float [T, 4, H/8, W/8] with T = (frames - 1) / 4 + 1, drawn from the
// seed. Each step splits the latent into `blocks` slices (sleeping step_ms/blocks
// per slice to model compute, checking the cancel token between slices) and
// applies a fixed two-step recurrence with RNG noise, so the checkpoint must hold
// latents, sampler history and the RNG state for a resume to be bitwise identical.
//
//   sched::register_fake_pipeline(registry);
#pragma once

#include <filesystem>

#include "scheduler/pipeline.h"
#include "scheduler/pipeline_registry.h"

namespace wand::sched {

constexpr const char* kFakeModelMarker = "wand-fake-model.json";

struct FakePipelineOptions {
  int step_ms = 10;
  int blocks = 4;
  double fps = 16.0;
};

class FakePipeline : public Pipeline {
 public:
  explicit FakePipeline(FakePipelineOptions options) : options_(options) {}
  // Reads <dir>/wand-fake-model.json; throws Error(kConfig) naming the field.
  static FakePipelineOptions read_options(const std::filesystem::path& dir);

  void validate(const JobSpec& spec) const override;
  std::unique_ptr<JobState> prepare(const JobSpec& spec, CancelToken& token) override;
  void step(JobState& state, CancelToken& token) override;
  int total_steps(const JobState& state) const override;
  int completed_steps(const JobState& state) const override;
  Video decode(JobState& state, CancelToken& token) override;
  void save_state(const JobState& state, StateBlobs& out) const override;
  void load_state(JobState& state, const StateBlobs& in) const override;

 private:
  FakePipelineOptions options_;
};

// "wandrgb": a trivial lossless container, "WANDRGB1 <frames> <height> <width> <fps>\n"
// followed by the raw RGB bytes [F, H, W, 3]. Deterministic.
EncodedVideo encode_wandrgb(const Video& video);

// Adds the "fake" factory (probe: the marker file exists).
void register_fake_pipeline(PipelineRegistry& registry);

}  // namespace wand::sched
