// The Wan generator end to end on tiny models (CPU, fp32): t2v / i2v / ti2v produce
// finite videos of the right shape, seeds are reproducible, a checkpoint taken
// at a step boundary resumes bitwise identically, the expert switch follows the
// boundary, cancellation stops mid-step; the i2v / ti2v conditioning is checked
// against the golden dit_i2v / dit_ti2v cases.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/image_prep.h"
#include "model/generator.h"
#include "model/tensor_bytes.h"
#include "model/safetensors.h"
#include "model/sampler_schedule.h"
#include "model/video.h"
#include "tests/model/tiny_model.h"
#include "tests/golden_dir.h"

namespace wand::model {
namespace {

namespace fs = std::filesystem;
using testing::fake_text_encoder;
using testing::kTinyTextDim;
using testing::make_temp_dir;
using testing::write_tiny_wan_dir;

const fs::path kGolden = wand::test::golden_root();

// One directory per preset for the whole test binary (written once).
class GeneratorTest : public ::testing::Test {
 protected:
  // ctest runs every test in its own process: write only the presets a test uses.
  static void SetUpTestSuite() { root_ = make_temp_dir("pipeline-test"); }
  static fs::path dir(const std::string& preset) {
    if (!fs::exists(root_ / preset)) write_tiny_wan_dir(root_ / preset, preset, 7);
    return root_ / preset;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  static std::unique_ptr<WanGenerator> make(const std::string& preset, int* text_calls = nullptr) {
    GeneratorOptions o;
    o.device = at::Device(at::kCPU);
    o.text_encoder = fake_text_encoder(kTinyTextDim, text_calls);
    return std::make_unique<WanGenerator>(dir(preset), o);
  }
  static fs::path root_;
};
fs::path GeneratorTest::root_;

GenRequest t2v_request(std::uint64_t seed) {
  GenRequest r;
  r.task = "t2v";
  r.prompt = "a red fox running through snow";
  r.negative = "blurry";
  r.width = 64;
  r.height = 48;
  r.frames = 5;
  r.steps = 4;
  r.seed = seed;
  return r;
}

// A smooth RGB test image [h, w, 3] as binary PPM bytes.
std::vector<std::uint8_t> ppm_image(int w, int h) {
  std::string head = "P6\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n";
  std::vector<std::uint8_t> b(head.begin(), head.end());
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      b.push_back(static_cast<std::uint8_t>(255 * x / std::max(1, w - 1)));
      b.push_back(static_cast<std::uint8_t>(255 * y / std::max(1, h - 1)));
      b.push_back(static_cast<std::uint8_t>((x * 7 + y * 13) % 256));
    }
  }
  return b;
}

at::Tensor run_all(WanGenerator& gen, GenState& st) {
  while (st.completed_steps() < st.total_steps()) gen.step(st);
  return gen.decode(st);
}

void expect_close(const at::Tensor& got, const at::Tensor& ref, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.sizes(), ref.sizes()) << what;
  at::Tensor g = got.to(at::kDouble), r = ref.to(at::kDouble);
  at::Tensor excess = (g - r).abs() - (atol + rtol * r.abs());
  EXPECT_LE(excess.max().item<double>(), 0.0) << what << " max abs err " << (g - r).abs().max().item<double>();
}

// ---------------------------------------------------------------- image prep

// WanGenerator::to_uint8, whole or frame by frame into a buffer: bit for bit the official
// save on the whole video (clamp to [-1, 1], (x + 1) / 2, x 255, truncation), values outside
// [-1, 1] included.
TEST(Generator, ToUint8FrameByFrameIsTheOfficialSave) {
  at::manual_seed(3);
  const at::Tensor video = at::randn({3, 5, 7, 9}) * 1.5;
  at::Tensor x = video.clamp(-1.0, 1.0);
  x = (x - (-1.0)) / (1.0 - (-1.0));
  const at::Tensor want = (x * 255).to(at::kByte).permute({1, 2, 3, 0}).contiguous();
  EXPECT_TRUE(at::equal(WanGenerator::to_uint8(video), want));
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(video.numel()), 0xAB);
  WanGenerator::to_uint8(video, buf.data());
  EXPECT_EQ(std::memcmp(buf.data(), want.data_ptr<std::uint8_t>(), buf.size()), 0);
  EXPECT_GT(want.max().item<int>(), 250);  // the data reaches both ends
  EXPECT_EQ(want.min().item<int>(), 0);
}

TEST(ImagePrep, BestOutputSizeDocExamples) {
  EXPECT_EQ(best_output_size(1920, 1080, 32, 32, 1280 * 704), (std::pair<int64_t, int64_t>{1248, 704}));
  EXPECT_EQ(best_output_size(1280, 704, 32, 32, 1280 * 704), (std::pair<int64_t, int64_t>{1280, 704}));
  EXPECT_EQ(best_output_size(832, 1104, 32, 32, 1280 * 704), (std::pair<int64_t, int64_t>{800, 1088}));
  EXPECT_THROW(best_output_size(0, 10, 32, 32, 4096), Error);
}

TEST(ImagePrep, I2vGoldenResizeMaskAndLatentSize) {
  auto in = load_safetensors((kGolden / "dit_i2v/inputs.safetensors").string());
  auto out = load_safetensors((kGolden / "dit_i2v/outputs.safetensors").string());
  at::Tensor rgb = in.at("image_uint8").permute({1, 2, 0}).contiguous();  // [90, 150, 3]
  auto [lat_h, lat_w] = i2v_latent_size(10240, rgb.size(0), rgb.size(1));
  EXPECT_EQ(lat_h, 8);
  EXPECT_EQ(lat_w, 16);
  at::Tensor resized = bicubic_resize(unit_image(rgb), 8 * lat_h, 8 * lat_w);
  expect_close(resized, out.at("y_build_image_resized"), 8e-6, 1e-4, "y_build_image_resized");
  at::Tensor msk = i2v_mask(13, lat_h, lat_w);
  EXPECT_TRUE(at::equal(msk.to(at::kDouble), out.at("y_build_msk"))) << "y_build_msk";
  // Layout: all four channels 1 on latent frame 0, 0 elsewhere.
  EXPECT_EQ(msk.select(1, 0).min().item<float>(), 1.0f);
  EXPECT_EQ(msk.narrow(1, 1, msk.size(1) - 1).max().item<float>(), 0.0f);
  EXPECT_THROW(i2v_mask(12, 2, 2), Error);
}

TEST(ImagePrep, BicubicEqualsInterpolateOnExample) {
  // F.interpolate(bicubic, align_corners=False) of a 2x2 ramp to 4x4, rows of
  // the cubic-convolution kernel (A = -0.75) with clamped borders.
  at::Tensor x = at::tensor({0.0f, 1.0f, 2.0f, 3.0f}).view({1, 2, 2});
  at::Tensor y = bicubic_resize(x, 4, 4);
  // Source coordinate of output column j: (j + 0.5) / 2 - 0.5 -> -0.25, 0.25, 0.75, 1.25.
  auto cubic = [](double t) {
    const double a = -0.75;
    t = std::abs(t);
    if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
    return 0.0;
  };
  auto interp1 = [&](const std::vector<double>& v, double s) {
    const double f = std::floor(s);
    const double t = s - f;
    double acc = 0;
    for (int k = -1; k <= 2; ++k) {
      int idx = static_cast<int>(f) + k;
      idx = std::min<int>(std::max(idx, 0), static_cast<int>(v.size()) - 1);
      acc += v[idx] * cubic(k - t);
    }
    return acc;
  };
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      const double si = (i + 0.5) / 2 - 0.5, sj = (j + 0.5) / 2 - 0.5;
      std::vector<double> col = {interp1({0, 1}, sj), interp1({2, 3}, sj)};
      EXPECT_NEAR(y[0][i][j].item<float>(), interp1(col, si), 1e-5) << i << "," << j;
    }
  }
}

// Double-precision separable Lanczos-3 (Pillow's definition), rounding per pass.
at::Tensor lanczos_reference(const at::Tensor& rgb, int64_t w, int64_t h) {
  auto pass = [](const at::Tensor& img, int64_t out, int axis) {
    const int64_t in = img.size(axis);
    const double scale = static_cast<double>(in) / out;
    const double fs = std::max(1.0, scale);
    const double support = 3.0 * fs;
    std::vector<int64_t> shape = img.sizes().vec();
    shape[axis] = out;
    at::Tensor res = at::empty(shape, at::kDouble);
    at::Tensor src = img.to(at::kDouble);
    auto lanczos = [](double x) {
      auto sinc = [](double v) { return v == 0 ? 1.0 : std::sin(M_PI * v) / (M_PI * v); };
      return (x >= -3 && x < 3) ? sinc(x) * sinc(x / 3) : 0.0;
    };
    for (int64_t o = 0; o < out; ++o) {
      const double c = (o + 0.5) * scale;
      const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(c - support + 0.5));
      const int64_t hi = std::min<int64_t>(in, static_cast<int64_t>(c + support + 0.5));
      at::Tensor acc = at::zeros_like(src.select(axis, 0));
      double ws = 0;
      for (int64_t i = lo; i < hi; ++i) {
        const double wgt = lanczos((i - c + 0.5) / fs);
        acc += wgt * src.select(axis, i);
        ws += wgt;
      }
      res.select(axis, o).copy_(acc / ws);
    }
    return res.round().clamp(0, 255).to(at::kByte);
  };
  at::Tensor x = rgb;
  if (w != rgb.size(1)) x = pass(x, w, 1);
  if (h != rgb.size(0)) x = pass(x, h, 0);
  return x;
}

TEST(ImagePrep, LanczosMatchesReferenceWithinOneLevel) {
  at::Tensor rgb = image_from_bytes(ppm_image(37, 23));
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{23, 37, 3}));
  for (auto [w, h] : std::vector<std::pair<int64_t, int64_t>>{{20, 11}, {64, 50}, {37, 40}, {15, 23}}) {
    at::Tensor got = lanczos_resize(rgb, w, h);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{h, w, 3}));
    at::Tensor ref = lanczos_reference(rgb, w, h);
    const int diff = (got.to(at::kInt) - ref.to(at::kInt)).abs().max().item<int>();
    EXPECT_LE(diff, 1) << w << "x" << h;
  }
  EXPECT_TRUE(at::equal(lanczos_resize(rgb, 37, 23), rgb));
}

TEST(ImagePrep, Ti2vGoldenTokenTimesteps) {
  auto in = load_safetensors((kGolden / "dit_ti2v/inputs.safetensors").string());
  at::Tensor t = ti2v_token_timesteps(7, 4, 5, 140, in.at("t_scalar").item<int64_t>(), true);
  EXPECT_TRUE(at::equal(t.to(at::kDouble), in.at("t"))) << "golden per-token timesteps";
  EXPECT_EQ(t.narrow(1, 0, 20).max().item<float>(), 0.0f);
  EXPECT_EQ(t.narrow(1, 20, 120).min().item<float>(), 700.0f);
  // Padding tokens and text-only mode get t everywhere.
  EXPECT_EQ(ti2v_token_timesteps(2, 2, 2, 10, 5, false).min().item<float>(), 5.0f);
}

TEST(ImagePrep, BadImageBytes) {
  EXPECT_THROW(image_from_bytes({}), Error);
  std::vector<std::uint8_t> trunc = ppm_image(8, 8);
  trunc.resize(trunc.size() - 5);
  EXPECT_THROW(image_from_bytes(trunc), Error);
}

TEST(TensorBytes, RoundTripAndErrors) {
  std::map<std::string, at::Tensor> m{{"a", at::randn({2, 3})},
                                      {"s", at::full({}, 3.5, at::kDouble)},
                                      {"b", at::randn({4}).to(at::kBFloat16)},
                                      {"e", at::empty({0}, at::kByte)}};
  auto bytes = tensors_to_bytes(m);
  auto back = tensors_from_bytes(bytes, "test");
  ASSERT_EQ(back.size(), m.size());
  for (auto& [k, v] : m) EXPECT_TRUE(at::equal(back.at(k), v)) << k;
  auto trunc = bytes;
  trunc.resize(trunc.size() - 3);
  EXPECT_THROW(tensors_from_bytes(trunc, "test"), Error);
  EXPECT_THROW(tensors_from_bytes({1, 2, 3}, "test"), Error);
}

// ---------------------------------------------------------------- generators

TEST_F(GeneratorTest, T2vEndToEndWritesVideoAndSwitchesExperts) {
  int text_calls = 0;
  auto gen = make("tiny-t2v", &text_calls);
  EXPECT_TRUE(WanGenerator::probe(dir("tiny-t2v")));
  GenState st = gen->prepare(t2v_request(11));
  EXPECT_EQ(text_calls, 2);  // prompt and negative, two separate calls
  EXPECT_EQ(st.latent.sizes(), (std::vector<int64_t>{16, 2, 6, 8}));
  EXPECT_EQ(st.seq_len, 2 * 3 * 4);
  at::Tensor video = run_all(*gen, st);
  ASSERT_EQ(video.sizes(), (std::vector<int64_t>{3, 5, 48, 64}));
  EXPECT_TRUE(at::isfinite(video).all().item<bool>());
  EXPECT_LE(video.abs().max().item<float>(), 1.0f);
  // Expert per step = high while t >= 875 (t2v boundary), from the schedule.
  SamplerSchedule s = make_schedule(SolverKind::kUniPC, 4, gen->config().sample_shift);
  std::string expect;
  for (int64_t t : s.timesteps) expect.push_back(t >= 875 ? 'h' : 'l');
  EXPECT_EQ(st.experts_run, expect);
  EXPECT_NE(expect.find('h'), std::string::npos);
  EXPECT_NE(expect.find('l'), std::string::npos);
  EXPECT_EQ(gen->block_calls(), 4 * 2 * gen->config().num_layers);
  at::Tensor rgb = WanGenerator::to_uint8(video);
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{5, 48, 64, 3}));
  VideoFrames vf;
  vf.frames = 5;
  vf.height = 48;
  vf.width = 64;
  vf.rgb.assign(rgb.data_ptr<std::uint8_t>(), rgb.data_ptr<std::uint8_t>() + rgb.numel());
  EncodedVideo file = encode_video(vf, gen->fps());
  const fs::path out = root_ / ("t2v." + file.extension);
  std::ofstream(out, std::ios::binary).write(reinterpret_cast<const char*>(file.bytes.data()),
                                             static_cast<std::streamsize>(file.bytes.size()));
  EXPECT_GT(fs::file_size(out), 1000u);
  // The file reads back as 5 frames of 64x48 (exactly the frames for the lossless fallback).
  VideoFrames back = have_libav() ? decode_video(file.bytes) : read_avi_rgb(file.bytes);
  EXPECT_EQ(back.frames, 5);
  EXPECT_EQ(back.height, 48);
  EXPECT_EQ(back.width, 64);
  if (!have_libav()) EXPECT_EQ(back.rgb, vf.rgb);
}

// guide_scale (a, b): a guides the low-noise expert's steps and b the high-noise expert's, the
// official sample_guide_scale order (model/wan_config.cpp: t2v-A14B (3.0, 4.0)); proto, wanctl
// and docs/protocol.md say the same. Step by step: another first value leaves every high-noise
// step bitwise the same and changes the first low-noise step; another second value changes
// step 0 (high noise).
TEST_F(GeneratorTest, TwoGuideScalesAreLowNoiseThenHighNoise) {
  auto gen = make("tiny-t2v");
  auto run = [&](const std::vector<double>& g, std::string* experts) {
    GenRequest r = t2v_request(21);
    r.guide_scale = g;
    GenState st = gen->prepare(r);
    EXPECT_EQ(st.guide_low, g.front());
    EXPECT_EQ(st.guide_high, g.back());
    std::vector<at::Tensor> latents;
    while (st.completed_steps() < st.total_steps()) {
      gen->step(st);
      latents.push_back(st.latent.clone());
    }
    *experts = st.experts_run;
    return latents;
  };
  std::string ea, eb, ec, ed;
  const auto a = run({2.0, 6.0}, &ea);
  const auto b = run({9.0, 6.0}, &eb);  // another low-noise scale
  const auto c = run({2.0, 1.5}, &ec);  // another high-noise scale
  ASSERT_EQ(ea, eb);
  ASSERT_EQ(ea, ec);
  const std::size_t first_low = ea.find('l');
  ASSERT_NE(first_low, std::string::npos) << ea;
  ASSERT_GT(first_low, 0u) << "the schedule starts on the high-noise expert: " << ea;
  for (std::size_t k = 0; k < first_low; ++k) {
    EXPECT_TRUE(at::equal(a[k], b[k])) << "high-noise step " << k << " used the first (low-noise) value";
  }
  EXPECT_FALSE(at::equal(a[first_low], b[first_low])) << "low-noise step " << first_low << " ignored the first value";
  EXPECT_FALSE(at::equal(a[0], c[0])) << "high-noise step 0 ignored the second value";
  // One value guides both experts.
  const auto d = run({6.0}, &ed);
  EXPECT_TRUE(at::equal(d[0], a[0]));
  EXPECT_FALSE(at::equal(d[first_low], a[first_low]));
}

TEST_F(GeneratorTest, RealUmt5TextEncoderAndDefaultNegativePrompt) {
  // The directory's own tiny umT5 + tokenizer (the default text encoder).
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  WanGenerator gen(dir("tiny-t2v"), o);
  GenRequest r = t2v_request(8);
  r.negative = "";
  r.steps = 2;
  GenState a = gen.prepare(r);
  EXPECT_EQ(a.context.size(1), kTinyTextDim);
  EXPECT_GT(a.context_null.size(0), a.context.size(0));  // the long default negative prompt
  at::Tensor va = WanGenerator::to_uint8(run_all(gen, a));
  GenState b = gen.prepare(r);
  EXPECT_TRUE(at::equal(a.context, b.context));
  EXPECT_TRUE(at::equal(va, WanGenerator::to_uint8(run_all(gen, b))));
}

TEST_F(GeneratorTest, SameSeedSameBytesDifferentSeedDiffers) {
  auto gen = make("tiny-t2v");
  GenState a = gen->prepare(t2v_request(5));
  GenState b = gen->prepare(t2v_request(5));
  GenState c = gen->prepare(t2v_request(6));
  at::Tensor va = WanGenerator::to_uint8(run_all(*gen, a));
  at::Tensor vb = WanGenerator::to_uint8(run_all(*gen, b));
  at::Tensor vc = WanGenerator::to_uint8(run_all(*gen, c));
  EXPECT_TRUE(at::equal(a.latent, b.latent));
  EXPECT_TRUE(at::equal(va, vb));
  EXPECT_FALSE(at::equal(a.latent, c.latent));
  EXPECT_FALSE(at::equal(va, vc));
}

TEST_F(GeneratorTest, I2vEndToEnd) {
  auto gen = make("tiny-i2v");
  EXPECT_FALSE(gen->supports("t2v"));
  GenRequest r = t2v_request(3);
  r.task = "i2v";
  r.width = 64;
  r.height = 64;  // area 4096; a 72x40 image -> latent 4x10 -> video 80x32
  r.image = ppm_image(72, 40);
  r.steps = 3;
  GenState st = gen->prepare(r);
  EXPECT_EQ(st.width, 80);
  EXPECT_EQ(st.height, 32);
  ASSERT_EQ(st.y.sizes(), (std::vector<int64_t>{20, 2, 4, 10}));
  EXPECT_TRUE(at::equal(st.y.narrow(0, 0, 4), i2v_mask(5, 4, 10)));
  at::Tensor video = run_all(*gen, st);
  ASSERT_EQ(video.sizes(), (std::vector<int64_t>{3, 5, 32, 80}));
  EXPECT_TRUE(at::isfinite(video).all().item<bool>());
  GenRequest no_image = r;
  no_image.image.clear();
  EXPECT_THROW(gen->prepare(no_image), Error);
}

TEST_F(GeneratorTest, Ti2vEndToEndKeepsImageLatentOnFrame0) {
  auto gen = make("tiny-ti2v");
  GenRequest r = t2v_request(4);
  r.task = "ti2v";
  r.width = 64;
  r.height = 64;
  r.frames = 5;
  r.steps = 3;
  r.image = ppm_image(70, 50);  // best_output_size -> 64x64; Lanczos to 90x64, centre crop
  GenState st = gen->prepare(r);
  EXPECT_EQ(st.width, 64);
  EXPECT_EQ(st.height, 64);
  ASSERT_EQ(st.latent.sizes(), (std::vector<int64_t>{48, 2, 4, 4}));
  ASSERT_EQ(st.z.sizes(), (std::vector<int64_t>{48, 1, 4, 4}));
  EXPECT_TRUE(at::equal(st.latent.narrow(1, 0, 1), st.z));
  while (st.completed_steps() < st.total_steps()) {
    gen->step(st);
    EXPECT_TRUE(at::equal(st.latent.narrow(1, 0, 1), st.z)) << "re-injection after step " << st.completed_steps();
  }
  EXPECT_EQ(st.experts_run, "sss");
  at::Tensor video = gen->decode(st);
  ASSERT_EQ(video.sizes(), (std::vector<int64_t>{3, 5, 64, 64}));
  EXPECT_TRUE(at::isfinite(video).all().item<bool>());
  // Text-only ti2v: exact size, no image latent.
  GenRequest t = t2v_request(4);
  t.task = "ti2v";
  t.width = 64;
  t.height = 32;
  t.steps = 2;
  GenState s2 = gen->prepare(t);
  EXPECT_FALSE(s2.z.defined());
  at::Tensor v2 = run_all(*gen, s2);
  ASSERT_EQ(v2.sizes(), (std::vector<int64_t>{3, 5, 32, 64}));
  EXPECT_TRUE(at::isfinite(v2).all().item<bool>());
}

TEST_F(GeneratorTest, GoldenConditioningI2vAndTi2v) {
  // The golden cases' VAEs in place of the tiny ones: y / z built from the
  // golden image must match the official WanI2V / WanTI2V arithmetic.
  const fs::path d = make_temp_dir("pipeline-golden");
  fs::copy(dir("tiny-i2v"), d / "i2v", fs::copy_options::recursive);
  fs::copy_file(kGolden / "vae21/Wan2.1_VAE.pth", d / "i2v/Wan2.1_VAE.pth", fs::copy_options::overwrite_existing);
  fs::copy(dir("tiny-ti2v"), d / "ti2v", fs::copy_options::recursive);
  fs::copy_file(kGolden / "vae22/Wan2.2_VAE.pth", d / "ti2v/Wan2.2_VAE.pth", fs::copy_options::overwrite_existing);
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.text_encoder = fake_text_encoder(kTinyTextDim);
  {
    auto in = load_safetensors((kGolden / "dit_i2v/inputs.safetensors").string());
    WanGenerator gen(d / "i2v", o);
    GenRequest r = t2v_request(1);
    r.task = "i2v";
    r.width = 128;
    r.height = 80;  // area 10240 as the case
    r.frames = 13;
    r.image_rgb = in.at("image_uint8").permute({1, 2, 0}).contiguous();
    GenState st = gen.prepare(r);
    expect_close(st.y, in.at("y"), 3e-5, 1e-4, "i2v y");
  }
  {
    auto in = load_safetensors((kGolden / "dit_ti2v/inputs.safetensors").string());
    auto out = load_safetensors((kGolden / "dit_ti2v/outputs.safetensors").string());
    WanGenerator gen(d / "ti2v", o);
    GenRequest r = t2v_request(1);
    r.task = "ti2v";
    r.width = 160;
    r.height = 128;
    r.frames = 25;
    r.image_rgb = in.at("image_uint8").permute({1, 2, 0}).contiguous();
    GenState st = gen.prepare(r);
    expect_close(st.z, out.at("z_build_z"), 4e-5, 1e-4, "ti2v z");
    EXPECT_EQ(st.seq_len, in.at("seq_len").item<int64_t>());
  }
  std::error_code ec;
  fs::remove_all(d, ec);
}

// Checkpoint after step k, destroy everything, restore into a fresh prepare()
// state of a fresh generator, continue: latents and video bytes identical. The
// same through resume(), which encodes no text and no image (the text encoder is
// never called, no "text" or "encode" phase starts) and draws no noise.
void check_resume(const fs::path& dir, const GenRequest& req, int k) {
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.text_encoder = fake_text_encoder(kTinyTextDim);
  at::Tensor ref_latent, ref_video;
  {
    WanGenerator gen(dir, o);
    GenState st = gen.prepare(req);
    ref_video = WanGenerator::to_uint8(run_all(gen, st));
    ref_latent = st.latent.clone();
  }
  std::map<std::string, std::vector<std::uint8_t>> blobs;
  {
    WanGenerator gen(dir, o);
    GenState st = gen.prepare(req);
    for (int i = 0; i < k; ++i) gen.step(st);
    blobs = gen.save_state(st);
  }
  {
    WanGenerator gen(dir, o);
    GenState st = gen.prepare(req);
    gen.load_state(st, blobs);
    EXPECT_EQ(st.completed_steps(), k);
    at::Tensor video = WanGenerator::to_uint8(run_all(gen, st));
    EXPECT_TRUE(at::equal(st.latent, ref_latent)) << dir << " k=" << k;
    EXPECT_TRUE(at::equal(video, ref_video)) << dir << " k=" << k;
  }
  int text_calls = 0;
  std::vector<std::string> phases;
  GeneratorOptions r = o;
  r.text_encoder = fake_text_encoder(kTinyTextDim, &text_calls);
  r.on_phase = [&phases](const char* p) {
    if (phases.empty() || phases.back() != p) phases.emplace_back(p);
  };
  WanGenerator gen(dir, r);
  GenState st = gen.resume(req, blobs);
  EXPECT_EQ(st.completed_steps(), k);
  EXPECT_EQ(text_calls, 0) << "resume encoded text";
  EXPECT_TRUE(phases.empty()) << "resume ran phase " << phases.front();
  at::Tensor video = WanGenerator::to_uint8(run_all(gen, st));
  EXPECT_EQ(text_calls, 0);
  EXPECT_EQ(phases, (std::vector<std::string>{"steps", "decode"}));
  EXPECT_TRUE(at::equal(st.latent, ref_latent)) << dir << " k=" << k << " (resume)";
  EXPECT_TRUE(at::equal(video, ref_video)) << dir << " k=" << k << " (resume)";
}

// resume() checks the checkpoint against the request as load_state() does against a
// fresh state: a checkpoint of another size or seed is refused, naming the blob.
TEST_F(GeneratorTest, ResumeRefusesACheckpointOfAnotherJob) {
  auto gen = make("tiny-t2v");
  GenState st = gen->prepare(t2v_request(31));
  gen->step(st);
  const auto blobs = gen->save_state(st);
  GenRequest other = t2v_request(31);
  other.width = 48;
  try {
    gen->resume(other, blobs);
    FAIL() << "resumed a checkpoint of another size";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
    EXPECT_NE(std::string(e.what()).find("'latent'"), std::string::npos) << e.what();
  }
  try {
    gen->resume(t2v_request(32), blobs);
    FAIL() << "resumed a checkpoint of another seed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  auto missing = blobs;
  missing.erase("cond");
  EXPECT_THROW(gen->resume(t2v_request(31), missing), Error);
}

TEST_F(GeneratorTest, ResumeIsBitwiseIdenticalT2v) {
  check_resume(dir("tiny-t2v"), t2v_request(21), 2);  // UniPC history straddles the expert switch
  GenRequest d = t2v_request(22);
  d.sampler = "dpm++";
  check_resume(dir("tiny-t2v"), d, 1);
}

TEST_F(GeneratorTest, ResumeIsBitwiseIdenticalI2v) {  // y = cat(mask, image latent) from the checkpoint
  GenRequest r = t2v_request(24);
  r.task = "i2v";
  r.width = 64;
  r.height = 64;
  r.steps = 3;
  r.image = ppm_image(72, 40);
  check_resume(dir("tiny-i2v"), r, 1);
}

TEST_F(GeneratorTest, ResumeIsBitwiseIdenticalTi2vWithImage) {
  GenRequest r = t2v_request(23);
  r.task = "ti2v";
  r.width = 64;
  r.height = 64;
  r.steps = 3;
  r.image = ppm_image(64, 64);
  check_resume(dir("tiny-ti2v"), r, 2);
}

TEST_F(GeneratorTest, CancellationStopsMidStepAndLeavesStateIntact) {
  auto gen = make("tiny-t2v");
  GenState st = gen->prepare(t2v_request(9));
  gen->step(st);
  at::Tensor before = st.latent.clone();
  const int64_t calls_before = gen->block_calls();
  int checks = 0;
  auto cancel_on_second = [&] {
    if (++checks == 2) throw Error(ErrorCode::kCancelled, "cancelled");
  };
  try {
    gen->step(st, cancel_on_second);
    FAIL() << "step did not stop";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  EXPECT_EQ(checks, 2);
  EXPECT_EQ(gen->block_calls() - calls_before, 2);  // one block, both branches, then stopped
  EXPECT_EQ(st.completed_steps(), 1);
  EXPECT_TRUE(at::equal(st.latent, before));
  // The same state continues to the same result as an uninterrupted run.
  at::Tensor v = WanGenerator::to_uint8(run_all(*gen, st));
  GenState ref = gen->prepare(t2v_request(9));
  EXPECT_TRUE(at::equal(v, WanGenerator::to_uint8(run_all(*gen, ref))));
}

TEST_F(GeneratorTest, ExternalCfgForwardReplacesTheResidentForward) {
  // An executor stand-in that runs the same DiT experts itself (not interleaved)
  // must give bitwise the same video; the generator loads no weights then.
  const fs::path d = dir("tiny-t2v");
  auto ref_gen = make("tiny-t2v");
  GenState ref = ref_gen->prepare(t2v_request(31));
  std::vector<int> schedule = ref_gen->expert_of_step(ref);
  at::Tensor ref_video = WanGenerator::to_uint8(run_all(*ref_gen, ref));

  auto hi = std::make_shared<WanDit>(WanDit::load(CheckpointDir(d / "high_noise_model"), RunDtype::kFloat32, at::kCPU));
  auto lo = std::make_shared<WanDit>(WanDit::load(CheckpointDir(d / "low_noise_model"), RunDtype::kFloat32, at::kCPU));
  std::vector<int> seen;
  GeneratorOptions o;
  o.device = at::Device(at::kCPU);
  o.text_encoder = fake_text_encoder(kTinyTextDim);
  o.cfg_forward = [&](const StepForwardInputs& in, const CancelCheck& check) {
    if (check) check();
    seen.push_back(in.high_noise ? 0 : 1);
    const WanDit& dit = in.high_noise ? *hi : *lo;
    return std::make_pair(dit.forward(in.x, in.t, in.context, in.seq_len, in.y),
                          dit.forward(in.x, in.t, in.context_null, in.seq_len, in.y));
  };
  WanGenerator gen(d, o);
  GenState st = gen.prepare(t2v_request(31));
  EXPECT_EQ(gen.expert_of_step(st), schedule);
  at::Tensor video = WanGenerator::to_uint8(run_all(gen, st));
  EXPECT_EQ(seen, schedule);
  EXPECT_EQ(gen.block_calls(), 0);
  EXPECT_TRUE(at::equal(video, ref_video));
}

TEST_F(GeneratorTest, BadRequestsAndCheckpoints) {
  auto gen = make("tiny-t2v");
  GenRequest r = t2v_request(1);
  r.width = 72;
  r.height = 40;  // 40 is not a multiple of 16
  EXPECT_THROW(gen->validate(r), Error);
  r = t2v_request(1);
  r.frames = 6;
  EXPECT_THROW(gen->validate(r), Error);
  r = t2v_request(1);
  r.task = "i2v";
  EXPECT_THROW(gen->validate(r), Error);
  r = t2v_request(1);
  r.sampler = "heun";
  EXPECT_THROW(gen->validate(r), Error);
  r.sampler = "euler";  // the flow-matching Euler sampler (issue 18)
  EXPECT_NO_THROW(gen->validate(r));
  r = t2v_request(1);
  r.image = ppm_image(8, 8);
  EXPECT_THROW(gen->validate(r), Error);

  GenState st = gen->prepare(t2v_request(1));
  gen->step(st);
  auto blobs = gen->save_state(st);
  GenState fresh = gen->prepare(t2v_request(1));
  auto missing = blobs;
  missing.erase("sampler");
  EXPECT_THROW(gen->load_state(fresh, missing), Error);
  auto trunc = blobs;
  trunc["latent"].resize(trunc["latent"].size() / 2);
  EXPECT_THROW(gen->load_state(fresh, trunc), Error);
  GenState other_seed = gen->prepare(t2v_request(2));
  EXPECT_THROW(gen->load_state(other_seed, blobs), Error);
  EXPECT_EQ(fresh.completed_steps(), 0);
  EXPECT_THROW(gen->decode(fresh), Error);  // steps not done
}

}  // namespace
}  // namespace wand::model
