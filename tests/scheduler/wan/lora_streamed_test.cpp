// LoRAs with streamed blocks (Note [LoRA merge], model/lora.h): a tiny t2v A14B-layout model
// streamed through a CpuDeviceTier that holds a few blocks, fp32 on the CPU. A job with a LoRA
// equals the resident generator's job with the same LoRA bit for bit; the slots keep the
// checkpoint's bytes, so a job without the LoRA after one with it (same StreamedDit, blocks
// still cached in the device tier) equals the plain job bit for bit.
#include <gtest/gtest.h>

#include <filesystem>

#include "memory/memory_pool.h"
#include "model/lora.h"
#include "model/generator.h"
#include "scheduler/exec/weight_store.h"
#include "scheduler/wan/streamed_dit.h"
#include "tests/model/lora_files.h"
#include "tests/model/tiny_model.h"
#include "tests/scheduler/exec/tiny_expert.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

namespace fs = std::filesystem;
using model::GeneratorOptions;
using model::GenRequest;
using model::GenState;
using model::RunDtype;
using model::WanGenerator;

struct TinyModel {
  test::TempDir tmp;
  fs::path dir() const { return tmp.path() / "tiny-t2v"; }
  std::string spool() const { return (tmp.path() / "spool").string(); }
  std::string lora() const { return (tmp.path() / "style.safetensors").string(); }
  TinyModel() {
    model::testing::write_tiny_wan_dir(dir(), "tiny-t2v", 5);
    model::testing::write_lora(
        model::testing::random_lora(model::WanConfig::from_preset("tiny-t2v", model::testing::kTinyTextDim), 8, 0.3),
        model::testing::TestLayout::kKohya, lora());
  }
  std::vector<fs::path> experts() const { return {dir() / "high_noise_model", dir() / "low_noise_model"}; }
};

GeneratorOptions cpu_options() {
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.run_dtype = RunDtype::kFloat32;
  o.text_encoder = model::testing::fake_text_encoder(model::testing::kTinyTextDim);
  return o;
}

GenRequest request(const std::string& lora = "", const std::string& expert = "both") {
  GenRequest r;
  r.task = "t2v";
  r.prompt = "a paper boat on a river";
  r.width = 48;
  r.height = 32;
  r.frames = 5;
  r.steps = 6;
  r.seed = 42;
  if (!lora.empty()) {
    r.loras.push_back(LoraRef{"style", 0.9, expert});
    r.lora_files.push_back(lora);
  }
  return r;
}

StreamedDitOptions streamed_options(const memory::MemoryPool& pool, const std::string& spool) {
  StreamedDitOptions o;
  o.ranks = {{pool.device_tier(0), -1, {}}};
  o.run = RunDtype::kFloat32;
  o.pack_dir = spool;
  o.name = "tiny";
  return o;
}

std::uint64_t max_block_bytes(const TinyModel& m) {
  memory::MemoryPool scratch(test::tiny_pool_config(32ull << 20, 32ull << 20));
  StreamedDit sd(scratch, m.experts(), streamed_options(scratch, m.spool()));
  return sd.max_block_bytes();
}

std::vector<at::Tensor> run_streamed(StreamedDit& sd, WanGenerator& gen, const GenRequest& r) {
  GenState st = gen.prepare(r);
  sd.begin_job(gen.expert_of_step(st), {0, st.seq_len});
  std::vector<at::Tensor> out;
  while (st.completed_steps() < st.total_steps()) {
    gen.step(st);
    out.push_back(st.latent.clone());
  }
  sd.end_job();
  return out;
}

std::vector<at::Tensor> run_resident(WanGenerator& gen, const GenRequest& r) {
  GenState st = gen.prepare(r);
  std::vector<at::Tensor> out;
  while (st.completed_steps() < st.total_steps()) {
    gen.step(st);
    out.push_back(st.latent.clone());
  }
  return out;
}

TEST(LoraStreamed, StreamedEqualsResidentWithALoraAndTheSlotsStayClean) {
  TinyModel m;
  // Three blocks of slots: the tiny model's four blocks (two experts) do not all fit, and the
  // blocks of the low-noise expert stay cached across jobs.
  memory::MemoryPool pool(test::tiny_pool_config(32ull << 20, 3 * max_block_bytes(m)));
  StreamedDit sd(pool, m.experts(), streamed_options(pool, m.spool()));
  GeneratorOptions so = cpu_options();
  so.cfg_forward = sd.cfg_forward();
  WanGenerator streamed(m.dir(), so);
  WanGenerator resident(m.dir(), cpu_options());

  const auto plain = run_resident(resident, request());
  const auto want = run_resident(resident, request(m.lora()));
  ASSERT_FALSE(at::equal(plain.back(), want.back())) << "the LoRA must change the job";

  const auto got = run_streamed(sd, streamed, request(m.lora()));
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < want.size(); ++k) EXPECT_TRUE(at::equal(got[k], want[k])) << "step " << k;
  EXPECT_GT(pool.resident(pool.device_tier(0)).size(), 0u) << "blocks must stay cached in the slots";

  // The next job, without the LoRA, reads the cached slots: the plain job's bytes.
  const auto after = run_streamed(sd, streamed, request());
  for (std::size_t k = 0; k < plain.size(); ++k) EXPECT_TRUE(at::equal(after[k], plain[k])) << "step " << k;

  // @low on the streamed path: the high-noise steps are the plain job's.
  const auto low = run_streamed(sd, streamed, request(m.lora(), "low"));
  EXPECT_TRUE(at::equal(low[0], plain[0]));
  EXPECT_FALSE(at::equal(low.back(), plain.back()));
  const auto low_resident = run_resident(resident, request(m.lora(), "low"));
  for (std::size_t k = 0; k < plain.size(); ++k) EXPECT_TRUE(at::equal(low[k], low_resident[k])) << "step " << k;
}

}  // namespace
}  // namespace wand::sched
