#include "scheduler/fake_pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/json_fields.h"

namespace wand::sched {

namespace {

// A job's fake device use, released with the state.
struct DeviceLease {
  std::shared_ptr<FakeDeviceMeter> meter;
  std::vector<DeviceSlot> slots;  // one, or a group's members
  std::uint64_t bytes = 0;
  DeviceLease() = default;
  DeviceLease(const DeviceLease&) = delete;
  DeviceLease& operator=(const DeviceLease&) = delete;
  ~DeviceLease() {
    if (meter) meter->release(slots, bytes);
  }
};

struct FakeState : JobState {
  DeviceLease lease;
  JobSpec spec;
  int latent_t = 0, latent_h = 0, latent_w = 0;
  std::vector<float> latent;     // [T, 4, H/8, W/8]
  std::vector<float> prev;       // sampler history: last derivative, same shape
  std::vector<float> text;       // [4] "text embedding" of the prompt
  std::uint64_t rng = 0;         // splitmix64 state
  int step = 0;
};

std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1), exact in float.
float uniform(std::uint64_t& s) {
  return static_cast<float>(static_cast<double>(splitmix64(s) >> 40) / double(1ull << 23) - 1.0);
}

FakeState& cast(JobState& s) { return dynamic_cast<FakeState&>(s); }
const FakeState& cast(const JobState& s) { return dynamic_cast<const FakeState&>(s); }

template <class T>
ByteBuffer to_bytes(const T* p, std::size_t n) {
  ByteBuffer b(n * sizeof(T));
  std::memcpy(b.data(), p, b.size());
  return b;
}

const ByteBuffer& blob(const StateBlobs& in, const char* name, std::size_t bytes) {
  auto it = in.find(name);
  if (it == in.end()) {
    throw Error(ErrorCode::kModelFormat, std::string("fake checkpoint: blob '") + name + "' missing");
  }
  if (it->second.size() != bytes) {
    throw Error(ErrorCode::kModelFormat, std::string("fake checkpoint: blob '") + name + "' has " +
                                             std::to_string(it->second.size()) + " bytes, want " +
                                             std::to_string(bytes));
  }
  return it->second;
}

}  // namespace

FakePipelineOptions FakePipeline::read_options(const std::filesystem::path& dir) {
  auto file = dir / kFakeModelMarker;
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kConfig, file.string() + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
    require_object(j, file.string());
    FakePipelineOptions o;
    o.step_ms = field_or<int>(j, "step_ms", o.step_ms);
    o.blocks = field_or<int>(j, "blocks", o.blocks);
    o.stall_ms = field_or<int>(j, "stall_ms", o.stall_ms);
    o.fps = field_or<double>(j, "fps", o.fps);
    o.bytes_per_voxel = field_or<std::uint64_t>(j, "bytes_per_voxel", o.bytes_per_voxel);
    if (o.step_ms < 0 || o.blocks < 1 || o.fps <= 0) {
      throw Error(ErrorCode::kConfig, "step_ms >= 0, blocks >= 1 and fps > 0 are required");
    }
    return o;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kConfig, file.string() + ": " + e.what());
  }
}

void FakePipeline::validate(const JobSpec& spec) const {
  if (spec.width % 8 != 0) throw Error(ErrorCode::kBadRequest, "field 'width': not a multiple of 8");
  if (spec.height % 8 != 0) {
    throw Error(ErrorCode::kBadRequest, "field 'height': not a multiple of 8");
  }
  if ((spec.frames - 1) % 4 != 0) {
    throw Error(ErrorCode::kBadRequest, "field 'frames': must be 4k+1");
  }
}

std::unique_ptr<JobState> FakePipeline::prepare(const JobSpec& spec, CancelToken& token) {
  validate(spec);
  token.throw_if_cancelled();
  if (options_.stall_ms > 0 && spec.prompt.find("stall") != std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.stall_ms));  // ignores the token on purpose
  }
  auto s = std::make_unique<FakeState>();
  if (meter_) {
    s->lease.bytes = fake_job_peak_bytes(spec, options_.bytes_per_voxel);
    s->lease.slots = group_.members.empty() ? std::vector<DeviceSlot>{slot_} : group_.members;
    meter_->acquire(s->lease.slots, s->lease.bytes, spec.prompt);
    s->lease.meter = meter_;
  }
  s->spec = spec;
  s->latent_t = (spec.frames - 1) / 4 + 1;
  s->latent_h = spec.height / 8;
  s->latent_w = spec.width / 8;
  std::size_t n = static_cast<std::size_t>(s->latent_t) * 4 * s->latent_h * s->latent_w;
  s->rng = spec.seed;
  s->latent.resize(n);
  for (auto& x : s->latent) x = uniform(s->rng);
  s->prev.assign(n, 0.0f);
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a of the prompt
  for (unsigned char c : spec.prompt) h = (h ^ c) * 1099511628211ull;
  for (int i = 0; i < 4; ++i) s->text.push_back(uniform(h));
  return s;
}

void FakePipeline::step(JobState& js, CancelToken& token) {
  FakeState& s = cast(js);
  WAND_ASSERT(s.step < s.spec.steps, "step past the end");
  std::vector<float> next = s.latent;
  std::vector<float> deriv(s.latent.size());
  const std::size_t n = s.latent.size();
  const std::size_t plane = static_cast<std::size_t>(s.latent_h) * s.latent_w;
  const float t = 1.0f - static_cast<float>(s.step) / static_cast<float>(s.spec.steps);
  for (int b = 0; b < options_.blocks; ++b) {
    token.throw_if_cancelled();
    if (options_.step_ms > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(options_.step_ms * 1000 / options_.blocks));
    }
    std::size_t lo = n * b / options_.blocks, hi = n * (b + 1) / options_.blocks;
    for (std::size_t i = lo; i < hi; ++i) {
      float e = s.text[(i / plane) % 4];
      deriv[i] = std::sin(s.latent[i] * 1.3f + e) * t;
      next[i] = s.latent[i] - 0.05f * (1.5f * deriv[i] - 0.5f * s.prev[i]);
    }
  }
  // Stochastic part (like an SDE sampler): draws advance the RNG every step.
  for (std::size_t i = 0; i < n; ++i) next[i] += 0.01f * uniform(s.rng);
  s.latent.swap(next);
  s.prev.swap(deriv);
  ++s.step;
}

int FakePipeline::total_steps(const JobState& s) const { return cast(s).spec.steps; }
int FakePipeline::completed_steps(const JobState& s) const { return cast(s).step; }

Video FakePipeline::decode(JobState& js, CancelToken& token) {
  FakeState& s = cast(js);
  token.throw_if_cancelled();
  Video v;
  v.frames = s.spec.frames;
  v.height = s.spec.height;
  v.width = s.spec.width;
  v.fps = options_.fps;
  v.rgb.resize(static_cast<std::size_t>(v.frames) * v.height * v.width * 3);
  const std::size_t plane = static_cast<std::size_t>(s.latent_h) * s.latent_w;
  std::size_t o = 0;
  for (int f = 0; f < v.frames; ++f) {
    int lt = f == 0 ? 0 : (f - 1) / 4 + 1;
    for (int y = 0; y < v.height; ++y) {
      for (int x = 0; x < v.width; ++x) {
        std::size_t base = static_cast<std::size_t>(lt) * 4 * plane +
                           static_cast<std::size_t>(y / 8) * s.latent_w + x / 8;
        for (int c = 0; c < 3; ++c) {
          float val = std::tanh(s.latent[base + c * plane]);
          v.rgb[o++] = static_cast<std::uint8_t>(std::lround((val + 1.0f) * 127.5f));
        }
      }
    }
  }
  return v;
}

void FakePipeline::save_state(const JobState& js, StateBlobs& out) const {
  const FakeState& s = cast(js);
  out["latent"] = to_bytes(s.latent.data(), s.latent.size());
  out["sampler"] = to_bytes(s.prev.data(), s.prev.size());
  out["rng"] = to_bytes(&s.rng, 1);
  std::int32_t step = s.step;
  out["step"] = to_bytes(&step, 1);
}

void FakePipeline::load_state(JobState& js, const StateBlobs& in) const {
  FakeState& s = cast(js);
  const std::size_t fb = s.latent.size() * sizeof(float);
  std::memcpy(s.latent.data(), blob(in, "latent", fb).data(), fb);
  std::memcpy(s.prev.data(), blob(in, "sampler", fb).data(), fb);
  std::memcpy(&s.rng, blob(in, "rng", sizeof s.rng).data(), sizeof s.rng);
  std::int32_t step = 0;
  std::memcpy(&step, blob(in, "step", sizeof step).data(), sizeof step);
  if (step < 0 || step > s.spec.steps) {
    throw Error(ErrorCode::kModelFormat, "fake checkpoint: blob 'step' = " + std::to_string(step) +
                                             " outside [0, " + std::to_string(s.spec.steps) + "]");
  }
  s.step = step;
}

EncodedVideo encode_wandrgb(const Video& v) {
  char header[128];
  int n = std::snprintf(header, sizeof header, "WANDRGB1 %d %d %d %.6g\n", v.frames, v.height,
                        v.width, v.fps);
  EncodedVideo e;
  e.format = "wandrgb";
  e.bytes.assign(header, header + n);
  e.bytes.insert(e.bytes.end(), v.rgb.begin(), v.rgb.end());
  return e;
}

std::uint64_t fake_job_peak_bytes(const JobSpec& spec, std::uint64_t bytes_per_voxel) {
  return static_cast<std::uint64_t>(std::max(spec.width, 0)) * static_cast<std::uint64_t>(std::max(spec.height, 0)) *
         static_cast<std::uint64_t>(std::max(spec.frames, 0)) * bytes_per_voxel;
}

void FakeDeviceMeter::acquire(const DeviceSlot& slot, std::uint64_t bytes, const std::string& prompt) {
  acquire(std::vector<DeviceSlot>{slot}, bytes, prompt);
}

void FakeDeviceMeter::release(const DeviceSlot& slot, std::uint64_t bytes) {
  release(std::vector<DeviceSlot>{slot}, bytes);
}

void FakeDeviceMeter::acquire(const std::vector<DeviceSlot>& members, std::uint64_t bytes,
                              const std::string& prompt) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const DeviceSlot& slot : members) {
    SlotUse& u = slots_[slot.index];
    u.name = slot.name;
    u.budget_bytes = slot.vram_budget_bytes;
    u.current_bytes += bytes;
    u.peak_bytes = std::max(u.peak_bytes, u.current_bytes);
    u.prompts.push_back(prompt);
  }
  max_active_ = std::max(max_active_, ++active_);
}

void FakeDeviceMeter::release(const std::vector<DeviceSlot>& members, std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const DeviceSlot& slot : members) {
    SlotUse& u = slots_[slot.index];
    WAND_ASSERT(u.current_bytes >= bytes, "fake device meter: release of more than acquired on " + slot.name);
    u.current_bytes -= bytes;
  }
  --active_;
}

void FakeDeviceMeter::made_group(const DeviceGroup& group) {
  std::lock_guard<std::mutex> lock(mu_);
  groups_.push_back(group.key());
}

std::vector<std::string> FakeDeviceMeter::groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  return groups_;
}

FakeDeviceMeter::SlotUse FakeDeviceMeter::slot(int index) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(index);
  return it == slots_.end() ? SlotUse{} : it->second;
}

std::vector<int> FakeDeviceMeter::slot_indices() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> out;
  for (const auto& [i, _] : slots_) out.push_back(i);
  return out;
}

int FakeDeviceMeter::max_concurrent_jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_active_;
}

void register_fake_pipeline(PipelineRegistry& registry, std::shared_ptr<FakeDeviceMeter> meter) {
  std::function<std::unique_ptr<Pipeline>(const std::filesystem::path&, const DeviceSlot&)> make_on;
  if (meter) {
    make_on = [meter](const std::filesystem::path& dir, const DeviceSlot& slot) -> std::unique_ptr<Pipeline> {
      return std::make_unique<FakePipeline>(FakePipeline::read_options(dir), slot, meter);
    };
  }
  registry.add_factory(PipelineFactory{
      "fake",
      [](const std::filesystem::path& dir) {
        std::error_code ec;
        return std::filesystem::is_regular_file(dir / kFakeModelMarker, ec);
      },
      [](const std::filesystem::path& dir) -> std::unique_ptr<Pipeline> {
        return std::make_unique<FakePipeline>(FakePipeline::read_options(dir));
      },
      encode_wandrgb,
      [](const std::filesystem::path&, const JobSpec& spec) { FakePipeline({0, 1, 16}).validate(spec); },
      make_on,
      [meter](const std::filesystem::path& dir, const DeviceGroup& group) -> std::unique_ptr<Pipeline> {
        if (meter) meter->made_group(group);
        return std::make_unique<FakePipeline>(FakePipeline::read_options(dir), group, meter);
      },
      [](const std::filesystem::path& dir) {
        ModelTraits t;
        t.variant = "fake";
        t.tasks = {"t2v", "i2v", "ti2v"};
        t.size_multiple = 8;
        t.fps = static_cast<int>(FakePipeline::read_options(dir).fps);
        return t;
      }});
}

}  // namespace wand::sched
