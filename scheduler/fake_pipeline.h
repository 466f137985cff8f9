// FakePipeline: a deterministic CPU stand-in for a Wan pipeline, for tests of the
// queue, runner and daemon. No LibTorch. A model directory holding the marker
// file wand-fake-model.json selects it:
//
//   {"step_ms": 20, "blocks": 4, "fps": 16, "bytes_per_voxel": 0}
//
// Latent: float [T, 4, H/8, W/8] with T = (frames - 1) / 4 + 1, drawn from the
// seed. Each step splits the latent into `blocks` slices (sleeping step_ms/blocks
// per slice to model compute, checking the cancel token between slices) and
// applies a fixed two-step recurrence with RNG noise, so the checkpoint must hold
// latents, sampler history and the RNG state for a resume to be bitwise identical.
//
//   sched::register_fake_pipeline(registry);
//
// Job-parallel tests (fake devices): with "bytes_per_voxel" > 0 a job uses
// fake_job_peak_bytes(spec) = width * height * frames * bytes_per_voxel on its
// slot's device from prepare() until its state is destroyed, recorded by a
// FakeDeviceMeter (current / peak bytes per slot, which jobs ran where, how many
// ran at once):
//
//   auto meter = std::make_shared<FakeDeviceMeter>();
//   sched::register_fake_pipeline(registry, meter);       // one pipeline per slot
//   ... JobRunner with slots and estimator = fake_job_peak_bytes(spec, 64) ...
//   EXPECT_LE(meter->slot(1).peak_bytes, 12 << 20);
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "scheduler/pipeline.h"
#include "scheduler/pipeline_registry.h"

namespace wand::sched {

constexpr const char* kFakeModelMarker = "wand-fake-model.json";

struct FakePipelineOptions {
  int step_ms = 10;
  int blocks = 4;
  double fps = 16.0;
  std::uint64_t bytes_per_voxel = 0;  // fake device use per pixel x frame (0: none)
};

// width * height * frames * bytes_per_voxel.
std::uint64_t fake_job_peak_bytes(const JobSpec& spec, std::uint64_t bytes_per_voxel);

// Records the fake device use of the FakePipelines of every slot. Thread-safe.
class FakeDeviceMeter {
 public:
  struct SlotUse {
    std::string name;
    std::uint64_t budget_bytes = 0;
    std::uint64_t current_bytes = 0;
    std::uint64_t peak_bytes = 0;           // never more than the budget, if placement works
    std::vector<std::string> prompts;       // jobs in start order (their prompts)
  };
  // A job starts using `bytes` on the slot (never refused: the meter only records).
  void acquire(const DeviceSlot& slot, std::uint64_t bytes, const std::string& prompt);
  void release(const DeviceSlot& slot, std::uint64_t bytes);
  SlotUse slot(int index) const;
  std::vector<int> slot_indices() const;
  int max_concurrent_jobs() const;          // jobs using any slot at the same time

 private:
  mutable std::mutex mu_;
  std::map<int, SlotUse> slots_;            // guarded by mu_
  int active_ = 0, max_active_ = 0;         // guarded by mu_
};

class FakePipeline : public Pipeline {
 public:
  explicit FakePipeline(FakePipelineOptions options) : options_(options) {}
  // On a device slot, recording its use in `meter` (may be null).
  FakePipeline(FakePipelineOptions options, DeviceSlot slot, std::shared_ptr<FakeDeviceMeter> meter)
      : options_(options), slot_(std::move(slot)), meter_(std::move(meter)) {}
  const DeviceSlot& slot() const { return slot_; }
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
  DeviceSlot slot_;
  std::shared_ptr<FakeDeviceMeter> meter_;
};

// "wandrgb": a trivial lossless container, "WANDRGB1 <frames> <height> <width> <fps>\n"
// followed by the raw RGB bytes [F, H, W, 3]. Deterministic.
EncodedVideo encode_wandrgb(const Video& video);

// Adds the "fake" factory (probe: the marker file exists). With a meter, the
// factory makes one pipeline per slot (make_on) recording into it.
void register_fake_pipeline(PipelineRegistry& registry, std::shared_ptr<FakeDeviceMeter> meter = nullptr);

}  // namespace wand::sched
