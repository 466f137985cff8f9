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
//
// Card groups (one job on several cards, Note [Card groups] in job_runner.h): the factory's
// make_group makes a FakePipeline over a DeviceGroup; its jobs use the same bytes on every
// member (recorded as one job on each member's SlotUse) and the meter lists every group a
// pipeline was made for:
//
//   meter->groups();                       // {"cfg-parallel@0,1"}
//   meter->slot(1).prompts;                // includes the grouped job's prompt
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
  // Tests (issue 15, Note [Stuck worker]): prepare() blocks this long for prompts that
  // contain "stall", ignoring the cancel token, like a read that never returns.
  int stall_ms = 0;
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
  // One job on every member of a group (counted once in max_concurrent_jobs).
  void acquire(const std::vector<DeviceSlot>& members, std::uint64_t bytes, const std::string& prompt);
  void release(const std::vector<DeviceSlot>& members, std::uint64_t bytes);
  // A group pipeline was made (register_fake_pipeline's make_group).
  void made_group(const DeviceGroup& group);
  std::vector<std::string> groups() const;  // the keys, in creation order
  SlotUse slot(int index) const;
  std::vector<int> slot_indices() const;
  int max_concurrent_jobs() const;          // jobs using any slot at the same time

 private:
  mutable std::mutex mu_;
  std::map<int, SlotUse> slots_;            // guarded by mu_
  int active_ = 0, max_active_ = 0;         // guarded by mu_
  std::vector<std::string> groups_;         // guarded by mu_
};

class FakePipeline : public Pipeline {
 public:
  explicit FakePipeline(FakePipelineOptions options) : options_(options) {}
  // On a device slot, recording its use in `meter` (may be null).
  FakePipeline(FakePipelineOptions options, DeviceSlot slot, std::shared_ptr<FakeDeviceMeter> meter)
      : options_(options), slot_(std::move(slot)), meter_(std::move(meter)) {}
  // On a group of cards (slot() is the first member), recording on every member.
  FakePipeline(FakePipelineOptions options, DeviceGroup group, std::shared_ptr<FakeDeviceMeter> meter)
      : options_(options), slot_(group.members.empty() ? DeviceSlot{} : group.members.front()),
        group_(std::move(group)), meter_(std::move(meter)) {}
  const DeviceSlot& slot() const { return slot_; }
  const DeviceGroup& group() const { return group_; }  // no members: a one-card pipeline
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
  DeviceGroup group_;
  std::shared_ptr<FakeDeviceMeter> meter_;
};

// "wandrgb": a trivial lossless container, "WANDRGB1 <frames> <height> <width> <fps>\n"
// followed by the raw RGB bytes [F, H, W, 3]. Deterministic.
EncodedVideo encode_wandrgb(const Video& video);

// Adds the "fake" factory (probe: the marker file exists). With a meter, the
// factory makes one pipeline per slot (make_on) recording into it. Its make_group makes
// a group pipeline (recorded by the meter when there is one).
void register_fake_pipeline(PipelineRegistry& registry, std::shared_ptr<FakeDeviceMeter> meter = nullptr);

}  // namespace wand::sched
