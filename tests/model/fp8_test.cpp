// fp8_e4m3fn weights (issue 17 item 2): the codec of model/fp8.h against the format's
// definition, the quantizer's error bounds, fp8_scaled safetensors files written by the
// model maker and read straight by CheckpointDir, the refusals, and the accuracy of a tiny
// expert forward and a tiny video with fp8 weights against bf16 (Note [fp8 scale
// granularity]; the measured numbers are in bench/results/fp8_tiny.md).
#include "model/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/dit.h"
#include "model/make_model/make_model.h"
#include "model/safetensors.h"
#include "model/safetensors_header.h"
#include "model/weight_storage.h"
#include "tests/model/tiny_model.h"

namespace wand::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::fake_text_encoder;
using testing::kTinyTextDim;
using testing::make_temp_dir;

class TempDir {
 public:
  explicit TempDir(const std::string& tag) : p_(make_temp_dir(tag)) {}
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(p_, ec);
  }
  const fs::path& path() const { return p_; }

 private:
  fs::path p_;
};

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// The format's definition, computed here independently of model/fp8.cpp: sign bit, 4-bit
// exponent with bias 7, 3-bit mantissa; exponent 0 is subnormal; no infinities; S.1111.111
// is NaN.
float definition(int c) {
  const int s = (c >> 7) & 1, e = (c >> 3) & 0xf, m = c & 7;
  if (e == 15 && m == 7) return std::nanf("");
  const double mag = e == 0 ? std::ldexp(static_cast<double>(m), -9) : std::ldexp(8.0 + m, e - 7 - 3);
  return static_cast<float>(s ? -mag : mag);
}

double rel_l2(const at::Tensor& a, const at::Tensor& ref) {
  const at::Tensor d = a.to(at::kDouble) - ref.to(at::kDouble);
  return d.norm().item<double>() / ref.to(at::kDouble).norm().item<double>();
}

// PSNR in dB of a against ref for values with peak-to-peak range `range`.
double psnr(const at::Tensor& a, const at::Tensor& ref, double range) {
  const double mse = (a.to(at::kDouble) - ref.to(at::kDouble)).pow(2).mean().item<double>();
  return 10.0 * std::log10(range * range / mse);
}

// ------------------------------------------------------------------- codec

TEST(Fp8Codec, DecodesAll256CodesAsTheFormatDefines) {
  at::Tensor codes = at::arange(256, at::kInt).to(at::kByte);
  const at::Tensor v = fp8_e4m3fn_to_float(codes);
  ASSERT_EQ(v.scalar_type(), at::kFloat);
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const float want = definition(c);
    const float got = v[c].item<float>();
    EXPECT_EQ(bits_of(fp8_e4m3fn_decode(static_cast<std::uint8_t>(c))), bits_of(got)) << c;
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      ++nans;
    } else {
      EXPECT_EQ(bits_of(got), bits_of(want)) << "code " << c << ": " << got << " vs " << want;  // -0 included
    }
  }
  EXPECT_EQ(nans, 2);  // 0x7f and 0xff only: no infinities
  EXPECT_EQ(definition(0x7e), 448.0f);
  EXPECT_EQ(v[0x7e].item<float>(), 448.0f);
  EXPECT_EQ(v[0x01].item<float>(), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(v[0x08].item<float>(), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(v[0x38].item<float>(), 1.0f);
  EXPECT_TRUE(std::signbit(v[0x80].item<float>()));
}

TEST(Fp8Codec, EncodesToTheNearestCodeTiesToEven) {
  // Every finite code round-trips.
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(fp8_e4m3fn_encode(definition(c)), c) << c;
  }
  // Random values: the code nearest by brute force over the definition, ties to the even
  // code (mantissa bit 0 clear), beyond 448 saturating.
  at::manual_seed(3);
  const at::Tensor x = at::cat({at::randn({4000}) * 40, at::randn({4000}) * 0.01, at::rand({2000}) * 1000 - 500});
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const float f = x[i].item<float>();
    int best = -1;
    double best_d = 1e300;
    for (int c = 0; c < 256; ++c) {
      if ((c & 0x7f) == 0x7f || std::signbit(definition(c)) != std::signbit(f)) continue;
      const double d = std::fabs(static_cast<double>(definition(c)) - f);
      if (d < best_d || (d == best_d && (c & 1) == 0)) best = c, best_d = d;
    }
    EXPECT_EQ(fp8_e4m3fn_encode(f), best) << f;
  }
  // Exact ties: 1 + 1/16 lies between 1 (0x38) and 1.125 (0x39) -> the even 0x38; 1 + 3/16 ->
  // 0x3a; half the smallest subnormal -> 0.
  EXPECT_EQ(fp8_e4m3fn_encode(1.0625f), 0x38);
  EXPECT_EQ(fp8_e4m3fn_encode(1.1875f), 0x3a);
  EXPECT_EQ(fp8_e4m3fn_encode(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(fp8_e4m3fn_encode(3.0f * std::ldexp(1.0f, -10)), 0x02);
  EXPECT_EQ(fp8_e4m3fn_encode(1e9f), 0x7e);
  EXPECT_EQ(fp8_e4m3fn_encode(-INFINITY), 0xfe);
  EXPECT_EQ(fp8_e4m3fn_encode(std::nanf("")), 0x7f);
}

// Round-trip error bounds of the absmax quantizer. Per element: a value in the normal range
// is off by at most half a step, 2^-4 of itself (3 mantissa bits); one in the subnormal range
// by half the subnormal step, 2^-10 x scale. Over a tensor the errors are spread over that
// interval, so the relative L2 is at most 2^-4 / sqrt(3) = 0.036 (uniform errors up to the
// bound) plus the subnormals' share.
TEST(Fp8Quantize, RoundTripErrorIsWithinTheFormatsHalfStep) {
  at::manual_seed(5);
  at::Tensor w = at::randn({96, 160});
  w.narrow(0, 7, 1).mul_(50.0);  // one outlier row: per-tensor scales coarsen every other row
  for (Fp8Scaling s : {Fp8Scaling::kTensor, Fp8Scaling::kRow}) {
    const Fp8Tensor q = quantize_fp8_e4m3fn(w, s);
    ASSERT_EQ(q.codes.scalar_type(), at::kByte);
    ASSERT_EQ(q.codes.sizes(), w.sizes());
    ASSERT_EQ(q.scale.dim(), s == Fp8Scaling::kRow ? 2 : 0);
    const at::Tensor back = fp8_dequantize(q.codes, q.scale, at::kFloat);
    const at::Tensor scale = q.scale.expand({96, 1});
    const at::Tensor bound = at::maximum(w.abs() * std::ldexp(1.0, -4), scale * std::ldexp(1.0, -10)) * (1 + 1e-6);
    EXPECT_TRUE(((back - w).abs() <= bound).all().item<bool>()) << fp8_scaling_name(s);
    // The largest magnitude of each scale group maps to 448 exactly.
    EXPECT_EQ((q.codes & 0x7f).max().item<int>(), 0x7e);
    EXPECT_LT(rel_l2(back, w), 0.036 * 1.05) << fp8_scaling_name(s);
  }
  // Per row keeps the ordinary rows at full precision; per tensor crushes them toward zero.
  auto normal_rows = [&](Fp8Scaling s) {
    const Fp8Tensor q = quantize_fp8_e4m3fn(w, s);
    const at::Tensor back = fp8_dequantize(q.codes, q.scale, at::kFloat);
    return rel_l2(back.narrow(0, 8, 80), w.narrow(0, 8, 80));
  };
  std::printf("[fp8] 96x160 N(0,1) with one row x50: ordinary rows' rel_l2 per row %.5f, per tensor %.5f\n",
              normal_rows(Fp8Scaling::kRow), normal_rows(Fp8Scaling::kTensor));
  EXPECT_LT(normal_rows(Fp8Scaling::kRow), 0.036);
  EXPECT_GT(normal_rows(Fp8Scaling::kTensor), normal_rows(Fp8Scaling::kRow));
  // An all-zero weight gets scale 1 and zero codes.
  const Fp8Tensor z = quantize_fp8_e4m3fn(at::zeros({4, 4}), Fp8Scaling::kRow);
  EXPECT_TRUE(at::equal(z.scale, at::ones({4, 1})));
  EXPECT_EQ(z.codes.sum().item<int>(), 0);
}

// Large tensors are dequantized in row chunks; the result is the unchunked one bit for bit.
TEST(Fp8Quantize, ChunkedDequantizationEqualsOnePass) {
  const std::int64_t rows = 2 * kDequantChunkElems / 1024 + 3, cols = 1024;
  at::manual_seed(9);
  const at::Tensor codes = at::randint(0, 256, {rows, cols}, at::kInt).to(at::kByte).bitwise_and(0xf7);  // no NaN
  const at::Tensor row_scale = at::rand({rows, 1}) + 0.5;
  const at::Tensor got = fp8_dequantize(codes, row_scale, at::kBFloat16);
  const at::Tensor want = (fp8_e4m3fn_to_float(codes) * row_scale).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(got, want));
  const at::Tensor one = at::full({}, 0.25f);
  EXPECT_TRUE(at::equal(fp8_dequantize(codes, one, at::kFloat), fp8_e4m3fn_to_float(codes) * 0.25f));
  EXPECT_THROW(fp8_dequantize(codes, at::ones({5}), at::kFloat), Error);
}

TEST(Fp8Storage, OnlyBlockLinearWeightsGoFp8) {
  EXPECT_EQ(block_tensor_storage("blocks.3.ffn.0.weight", 2, "BF16", WeightsDtype::kFp8), StoredAs::kFp8);
  EXPECT_EQ(block_tensor_storage("blocks.3.attn1.to_q.weight", 2, "F32", WeightsDtype::kFp8), StoredAs::kFp8);
  EXPECT_EQ(block_tensor_storage("blocks.3.ffn.0.bias", 1, "BF16", WeightsDtype::kFp8), StoredAs::kRun);
  EXPECT_EQ(block_tensor_storage("blocks.3.self_attn.norm_q.weight", 1, "BF16", WeightsDtype::kFp8), StoredAs::kRun);
  EXPECT_EQ(block_tensor_storage("blocks.3.modulation", 3, "F32", WeightsDtype::kFp8), StoredAs::kRun);
  EXPECT_EQ(block_tensor_storage("text_embedding.0.weight", 2, "BF16", WeightsDtype::kFp8), StoredAs::kRun);
  EXPECT_EQ(block_tensor_storage("blocks.3.ffn.0.weight", 2, "BF16", WeightsDtype::kAuto), StoredAs::kRun);
  EXPECT_EQ(block_tensor_storage("blocks.3.ffn.0.weight", 2, "F8_E4M3", WeightsDtype::kAuto), StoredAs::kFp8);
  EXPECT_EQ(block_tensor_storage("blocks.3.ffn.0.weight", 2, "F8_E4M3", WeightsDtype::kRun), StoredAs::kRun);
  EXPECT_EQ(parse_weights_dtype("fp8", "x"), WeightsDtype::kFp8);
  EXPECT_TRUE(has(what_of([] { parse_weights_dtype("int4", "models.m.weights_dtype"); }), "models.m.weights_dtype"));
  EXPECT_EQ(fp8_scale_key_of("blocks.0.ffn.0.weight"), "blocks.0.ffn.0.scale_weight");
  EXPECT_EQ(fp8_weight_key_of("blocks.0.ffn.0.scale_weight"), "blocks.0.ffn.0.weight");
}

// ------------------------------------------------------------------- files

make::MakeModelOptions tiny(const fs::path& out, const std::string& fp8, at::ScalarType dtype = at::kBFloat16,
                            const std::string& layout = "release") {
  make::MakeModelOptions o;
  o.preset = "tiny-t2v";
  o.out = out;
  o.seed = 7;
  o.dtype = dtype;
  o.fp8 = fp8;
  o.layout = layout;
  return o;
}

// wand-make-model --dtype fp8 writes ComfyUI's fp8_scaled layout: F8_E4M3 block linear
// weights, a per-tensor F32 "<layer>.scale_weight" of shape [] beside each, the "scaled_fp8"
// marker, everything else bf16; CheckpointDir reads it straight, and every tensor equals the
// bf16 model's (same seed): bitwise where it stays bf16, within the format's bound where fp8.
TEST(Fp8Files, FixtureIsReadStraight) {
  TempDir t("fp8-files");
  make::MakeModelOptions o = tiny(t.path() / "fp8", "scaled");
  o.dit_only = true;
  make::make_model(o);
  o = tiny(t.path() / "bf16", "");
  o.dit_only = true;
  make::make_model(o);
  const fs::path e8 = t.path() / "fp8" / "high_noise_model", e16 = t.path() / "bf16" / "high_noise_model";

  // The header as ComfyUI writes it.
  std::map<std::string, SafetensorsEntry> entries;
  for (const auto& p : fs::directory_iterator(e8)) {
    if (p.path().extension() != ".safetensors") continue;
    for (const auto& e : read_safetensors_header(p.path().string()).entries) entries[e.name] = e;
  }
  ASSERT_TRUE(entries.count("scaled_fp8"));
  EXPECT_EQ(entries.at("scaled_fp8").dtype, "F8_E4M3");
  EXPECT_EQ(entries.at("blocks.0.self_attn.q.weight").dtype, "F8_E4M3");
  EXPECT_EQ(entries.at("blocks.0.self_attn.q.scale_weight").dtype, "F32");
  EXPECT_TRUE(entries.at("blocks.0.self_attn.q.scale_weight").shape.empty());
  EXPECT_EQ(entries.at("blocks.0.self_attn.q.bias").dtype, "BF16");
  EXPECT_EQ(entries.at("blocks.0.modulation").dtype, "BF16");
  EXPECT_EQ(entries.at("text_embedding.0.weight").dtype, "BF16");

  const CheckpointDir ck8(e8), ck16(e16);
  EXPECT_EQ(ck8.names(), ck16.names());  // the scales and the marker are not model keys
  int fp8 = 0;
  for (const std::string& n : ck16.names()) {
    const TensorInfo& ti = ck8.info(n);
    const at::Tensor ref = ck16.load(n, at::kFloat);
    const at::Tensor got = ck8.load(n, at::kFloat);
    if (ti.fp8) {
      ++fp8;
      EXPECT_TRUE(ck8.has_scale(n)) << n;
      EXPECT_EQ(ti.dtype, at::kByte);
      EXPECT_EQ(ti.nbytes, static_cast<std::uint64_t>(ti.numel()));
      EXPECT_TRUE(at::equal(got, fp8_dequantize(ck8.load_stored(n), ck8.load_scale(n), at::kFloat))) << n;
      const double bound = ref.abs().max().item<double>() / 448.0 * std::ldexp(1.0, -10);
      EXPECT_TRUE(((got - ref).abs() <= at::maximum(ref.abs() * std::ldexp(1.0, -4), at::full({}, bound)) * (1 + 1e-6))
                      .all()
                      .item<bool>())
          << n;
      EXPECT_EQ(ck8.load(n, at::kBFloat16).scalar_type(), at::kBFloat16);
    } else {
      EXPECT_TRUE(at::equal(got, ref)) << n;
    }
  }
  EXPECT_EQ(fp8, 10 * ck16.config().num_layers);  // q, k, v, o twice, ffn.0, ffn.2 per block
}

// Plain fp8_e4m3fn (no marker, no scales): scale 1. Per-row scales ([R]) read the same way.
// The diffusers naming carries its scales under its own names.
TEST(Fp8Files, PlainRowScaledAndDiffusersFiles) {
  TempDir t("fp8-plain");
  for (const char* kind : {"plain", "scaled-row"}) {
    make::MakeModelOptions o = tiny(t.path() / kind, kind);
    o.dit_only = true;
    make::make_model(o);
    const CheckpointDir ck(t.path() / kind / "low_noise_model");
    const std::string n = "blocks.1.ffn.2.weight";
    ASSERT_TRUE(ck.info(n).fp8) << kind;
    EXPECT_EQ(ck.has_scale(n), std::string(kind) != "plain");
    const at::Tensor s = ck.load_scale(n);
    if (std::string(kind) == "plain") {
      EXPECT_EQ(s.dim(), 0);
      EXPECT_EQ(s.item<float>(), 1.0f);
      EXPECT_TRUE(at::equal(ck.load(n), fp8_e4m3fn_to_float(ck.load_stored(n))));
    } else {
      EXPECT_EQ(s.sizes(), (std::vector<int64_t>{ck.info(n).shape[0], 1}));
    }
  }
  make::MakeModelOptions o = tiny(t.path() / "dif", "scaled", at::kBFloat16, "diffusers");
  o.dit_only = true;
  make::make_model(o);
  const CheckpointDir ck(t.path() / "dif" / "transformer");
  EXPECT_TRUE(ck.info("blocks.0.cross_attn.k.weight").fp8);
  EXPECT_TRUE(ck.has_scale("blocks.0.cross_attn.k.weight"));
}

// Rewrites one safetensors file with `edit` applied to its header (data unchanged).
void rewrite_header(const fs::path& f, const std::function<void(json&)>& edit) {
  const SafetensorsHeader h = read_safetensors_header(f.string());
  std::ifstream in(f, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json j = json::object();
  for (const auto& e : h.entries) j[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  edit(j);
  const std::string text = j.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  std::ofstream o(f, std::ios::binary | std::ios::trunc);
  o << out << text << all.substr(h.data_start);
}

fs::path single_shard(const fs::path& expert) {
  for (const auto& p : fs::directory_iterator(expert)) {
    if (p.path().extension() == ".safetensors") return p.path();
  }
  return {};
}

// Bad fp8 input is refused at load naming the file and the key: an fp8_scaled file (the
// marker) without a weight's scale, a scale of the wrong size, another fp8 format (E5M2).
TEST(Fp8Files, BadFp8InputNamesTheFileAndTheKey) {
  TempDir t("fp8-bad");
  make::MakeModelOptions o = tiny(t.path() / "m", "scaled");
  o.dit_only = true;
  o.max_shard_bytes = 1ull << 40;  // one shard
  o.preset = "tiny-ti2v";
  make::make_model(o);
  const fs::path f = single_shard(t.path() / "m");
  ASSERT_FALSE(f.empty());
  const std::string key = "blocks.1.self_attn.v.weight";
  {
    // Drop the scale: rename it to a key nobody reads (the header stays consistent).
    rewrite_header(f, [&](json& j) {
      j["zz.unused"] = j["blocks.1.self_attn.v.scale_weight"];
      j.erase("blocks.1.self_attn.v.scale_weight");
    });
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "m"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, key) && has(w, "scale")) << w;
  }
  make::make_model(o);
  {
    // A per-row scale with the wrong number of elements: a 1-D 4-byte scale claims 2 bytes of 2 BF16.
    rewrite_header(f, [&](json& j) {
      auto& s = j["blocks.1.self_attn.v.scale_weight"];
      s["dtype"] = "BF16";
      s["shape"] = {2};
    });
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "m"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, "blocks.1.self_attn.v.scale_weight")) << w;
  }
  make::make_model(o);
  {
    rewrite_header(f, [&](json& j) { j[key]["dtype"] = "F8_E5M2"; });
    const std::string w = what_of([&] { CheckpointDir ck(t.path() / "m"); });
    EXPECT_TRUE(has(w, f.string()) && has(w, key) && has(w, "F8_E5M2")) << w;
  }
}

// ------------------------------------------------------------------- accuracy

// One expert forward (both CFG branches, bf16 run) with fp8 weights against the same
// weights in bf16. Bound: each GEMM weight carries a relative L2 error of at most 0.036
// (above); a GEMM's output inherits its weight's relative error (at most, for errors
// uncorrelated with the input), and the residual stream adds the blocks' contributions to an
// unquantized skip path, so the output's error stays below the per-weight bound; 0.05 leaves
// 40% for the bf16 run's own rounding, and a wrong scale or code (a factor, a sign) gives O(1).
// Measured (bench/results/fp8_tiny.md): 0.0130 per tensor, 0.0133 per row.
TEST(Fp8Accuracy, TinyExpertForwardAgainstBf16) {
  TempDir t("fp8-fwd");
  for (const char* kind : {"", "scaled", "scaled-row"}) {
    make::MakeModelOptions o = tiny(t.path() / (std::string("m") + kind), kind);
    o.dit_only = true;
    make::make_model(o);
  }
  const WanConfig cfg = WanConfig::from_preset("tiny-t2v", kTinyTextDim);
  at::manual_seed(21);
  const at::Tensor x = at::randn({cfg.out_dim, 3, 8, 10});
  const at::Tensor tt = at::full({1}, 700, at::kLong);
  const at::Tensor ctx = at::randn({7, cfg.text_dim}) * 0.5, ctx0 = at::randn({5, cfg.text_dim}) * 0.5;
  auto run = [&](const char* kind) {
    const CheckpointDir ck(t.path() / (std::string("m") + kind) / "high_noise_model");
    const WanDit dit = WanDit::load(ck, RunDtype::kBFloat16, at::kCPU, true);
    return dit.forward_cfg(x, tt, ctx, ctx0, 3 * 4 * 5).first;
  };
  const at::Tensor ref = run("");
  for (const char* kind : {"scaled", "scaled-row"}) {
    const at::Tensor got = run(kind);
    const double r = rel_l2(got, ref);
    const double range = (ref.max() - ref.min()).item<double>();
    std::printf("[fp8] expert forward %-10s rel_l2 %.5f psnr %.2f dB\n", kind, r, psnr(got, ref, range));
    EXPECT_LT(r, 0.05) << kind;
    EXPECT_GT(r, 0.0) << kind;  // the weights did change
  }
}

// A tiny t2v video (both experts, 4 steps, VAE decode) with fp8 weights against bf16.
// Latents: relative L2 below 0.05, the forward's bound: each step's prediction error enters
// the latent scaled by the step's sigma change (< 1 in sum over the schedule), so the latent
// error stays below one forward's. Video in [-1, 1]: PSNR above 40 dB (an error of 1% of the
// range). Measured: 0.0053 / 58.7 dB per tensor, 0.0063 / 55.7 dB per row.
TEST(Fp8Accuracy, TinyVideoAgainstBf16) {
  TempDir t("fp8-video");
  for (const char* kind : {"", "scaled", "scaled-row"}) make::make_model(tiny(t.path() / (std::string("m") + kind), kind));
  GenRequest req;
  req.task = "t2v";
  req.prompt = "a lighthouse at dusk";
  req.negative = "blurry";
  req.width = 64;
  req.height = 48;
  req.frames = 5;
  req.steps = 4;
  req.seed = 11;
  auto gen_of = [&](const char* kind, at::Tensor* video) {
    GeneratorOptions o;
    o.device = at::Device(at::kCPU);
    o.text_encoder = fake_text_encoder(kTinyTextDim);
    WanGenerator gen(t.path() / (std::string("m") + kind), o);
    GenState st = gen.prepare(req);
    while (st.completed_steps() < st.total_steps()) gen.step(st);
    *video = gen.decode(st);
    return st.latent;
  };
  at::Tensor vref, v;
  const at::Tensor lref = gen_of("", &vref);
  for (const char* kind : {"scaled", "scaled-row"}) {
    const at::Tensor l = gen_of(kind, &v);
    const double r = rel_l2(l, lref), p = psnr(v, vref, 2.0);
    std::printf("[fp8] tiny video %-10s latent rel_l2 %.5f video psnr %.2f dB\n", kind, r, p);
    EXPECT_LT(r, 0.05) << kind;
    EXPECT_GT(p, 40.0) << kind;
  }
}

}  // namespace
}  // namespace wand::model
