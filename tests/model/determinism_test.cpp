// Same job, same bytes: the resident daemon's CPU path (one WanGenerator, jobs
// one after another; the tiny t2v model's own umT5) run four times in one
// process for seeds that once gave a different mp4 on every run (13, 14; see
// tests/daemon/job_parallel_test.cpp, Note [Stable seeds]). Each stage is
// compared separately, so a failure names it: latents after every step, the
// decoded video, the uint8 frames, and the mp4 bytes (encode_video). Before
// Note [x264 AVX-512] (model/video.cpp) seeds 13 and 14 failed on the mp4 bytes
// alone, on a CPU with AVX-512; everything up to the frames was identical.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "model/generator.h"
#include "model/video.h"
#include "tests/model/tiny_model.h"

namespace wand::model {
namespace {

namespace fs = std::filesystem;

struct RunOutputs {
  std::vector<at::Tensor> latents;  // after prepare, then after each step: [16, F', H', W'] fp32
  at::Tensor video;                 // [3, F, H, W] fp32
  at::Tensor rgb;                   // [F, H, W, 3] uint8
  std::vector<std::uint8_t> file;   // encode_video bytes
};

VideoFrames frames_of(const at::Tensor& rgb) {
  VideoFrames v;
  v.frames = rgb.size(0);
  v.height = rgb.size(1);
  v.width = rgb.size(2);
  v.rgb.assign(rgb.data_ptr<std::uint8_t>(), rgb.data_ptr<std::uint8_t>() + rgb.numel());
  return v;
}

RunOutputs run_job(WanGenerator& gen, std::uint64_t seed) {
  GenRequest r;  // tests/daemon wan_job(seed): 64x64, 5 frames, 3 steps, default negative
  r.task = "t2v";
  r.prompt = "a cat on a surfboard";
  r.width = 64;
  r.height = 64;
  r.frames = 5;
  r.steps = 3;
  r.seed = seed;
  RunOutputs out;
  GenState st = gen.prepare(r);
  out.latents.push_back(st.latent.clone());
  while (st.completed_steps() < st.total_steps()) {
    gen.step(st);
    out.latents.push_back(st.latent.clone());
  }
  out.video = gen.decode(st);
  out.rgb = WanGenerator::to_uint8(out.video).contiguous();
  out.file = encode_video(frames_of(out.rgb), gen.fps()).bytes;
  return out;
}

class Determinism : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  static void SetUpTestSuite() {
    root_ = testing::make_temp_dir("determinism-test");
    testing::write_tiny_wan_dir(root_ / "tiny-t2v", "tiny-t2v", 1);  // as wand-make-model --seed 1
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  static fs::path root_;
};
fs::path Determinism::root_;

TEST_P(Determinism, SameSeedFourRunsInOneProcessGiveIdenticalLatentsFramesAndMp4) {
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  WanGenerator gen(root_ / "tiny-t2v", o);
  const std::uint64_t seed = GetParam();
  const RunOutputs ref = run_job(gen, seed);
  for (int run = 1; run < 4; ++run) {
    const RunOutputs got = run_job(gen, seed);
    ASSERT_EQ(got.latents.size(), ref.latents.size());
    for (size_t k = 0; k < ref.latents.size(); ++k) {
      EXPECT_TRUE(at::equal(got.latents[k], ref.latents[k]))
          << "run " << run << " latent after step " << k << " differs, max abs diff "
          << (got.latents[k] - ref.latents[k]).abs().max().item<double>();
    }
    EXPECT_TRUE(at::equal(got.video, ref.video)) << "run " << run << " decoded video differs";
    EXPECT_TRUE(at::equal(got.rgb, ref.rgb)) << "run " << run << " uint8 frames differ";
    EXPECT_TRUE(got.file == ref.file) << "run " << run << " mp4 bytes differ: " << got.file.size() << " vs "
                                      << ref.file.size();
  }
  // The encoder alone (Note [x264 AVX-512] in model/video.cpp): the first run's frames
  // encoded again give the same bytes, with the default threads and with one thread.
  for (int run = 1; run < 4; ++run) {
    EXPECT_TRUE(encode_video(frames_of(ref.rgb), gen.fps()).bytes == ref.file)
        << "encode " << run << " of identical frames gave different bytes";
  }
  if (have_libav()) {
    Mp4Options one;
    one.threads = 1;
    const std::vector<std::uint8_t> first = encode_mp4(frames_of(ref.rgb), gen.fps(), one);
    for (int run = 1; run < 4; ++run) {
      EXPECT_TRUE(encode_mp4(frames_of(ref.rgb), gen.fps(), one) == first)
          << "one-thread encode " << run << " of identical frames gave different bytes";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, Determinism, ::testing::Values(11, 13, 14));

}  // namespace
}  // namespace wand::model
