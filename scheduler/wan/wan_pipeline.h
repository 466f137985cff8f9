// WanPipeline: the job runner's Pipeline (scheduler/pipeline.h) over the Wan2.2
// generators of model/pipeline.h (t2v-A14B, i2v-A14B, ti2v-5B and the tiny
// presets), and its registration in a PipelineRegistry.
//
//   sched::PipelineRegistry reg;
//   sched::register_wan_pipeline(reg);                  // factory "wan", mp4 encoder
//   reg.add_model("t2v", "/var/lib/wand/models/Wan2.2-T2V-A14B");
//   std::shared_ptr<sched::Pipeline> p = reg.pipeline("t2v");
//
// JobSpec -> GenRequest: task, prompt, negative (empty: the official default
// negative prompt), image bytes, width/height/frames/steps (0: the model's
// defaults), seed, guide_scale (empty: default; one value: both experts; two:
// low-noise, high-noise), shift, sampler. validate() adds the model checks:
// sizes multiples of 16 (A14B) / 32 (ti2v), frames 4n + 1, task supported by
// the directory, image present for i2v and absent for t2v.
// Checkpoint blobs: "latent", "sampler", "rng", "cond" (see WanGenerator::save_state).
//
// Threads: one job at a time on the runner's thread (the generator is not
// thread-safe); validate() only reads the generator's config.
// This header is free of LibTorch (the daemon compiles without it).
#pragma once

#include <filesystem>
#include <memory>

#include "scheduler/pipeline.h"
#include "scheduler/pipeline_registry.h"

namespace wand::model {
class WanGenerator;
struct GeneratorOptions;
}  // namespace wand::model

namespace wand::sched {

class WanPipeline : public Pipeline {
 public:
  // Loads the directory's configs (weights are loaded on first use).
  explicit WanPipeline(const std::filesystem::path& dir);
  WanPipeline(const std::filesystem::path& dir, const model::GeneratorOptions& options);
  ~WanPipeline() override;

  void validate(const JobSpec& spec) const override;
  std::unique_ptr<JobState> prepare(const JobSpec& spec, CancelToken& token) override;
  void step(JobState& state, CancelToken& token) override;
  int total_steps(const JobState& state) const override;
  int completed_steps(const JobState& state) const override;
  Video decode(JobState& state, CancelToken& token) override;
  void save_state(const JobState& state, StateBlobs& out) const override;
  void load_state(JobState& state, const StateBlobs& in) const override;

  model::WanGenerator& generator() { return *gen_; }

 private:
  std::unique_ptr<model::WanGenerator> gen_;
};

// True when `dir` has the file layout of a Wan2.2 release (A14B or ti2v-5B).
bool probe_wan_dir(const std::filesystem::path& dir);
std::unique_ptr<Pipeline> make_wan_pipeline(const std::filesystem::path& dir);
// The output encoder: H.264 mp4 when built with libav, else the lossless AVI
// of model/video.h (format "mp4" or "avi").
EncodedVideo encode_wan_video(const Video& video);
// Adds the "wan" factory (probe_wan_dir, make_wan_pipeline, encode_wan_video).
void register_wan_pipeline(PipelineRegistry& registry);

}  // namespace wand::sched
