// Fused DiT kernels on CUDA (labels model;gpu; skip without a GPU or without
// the kernels): each kernel against a float64 reference of its math, and
// whole blocks, fused vs unfused (WanDit::block), at tiny, ti2v (per-token
// modulation, R = 2) and A14B (D = 5120, 40 heads) widths with padded sequences.
//
// Note [Fused test tolerances]: every bf16 output is compared elementwise with
//   |got - ref| <= 2^-8 |ref| + f * mag + 1e-6
// where 2^-8 |ref| is one final bf16 rounding (half an ulp is <= 2^-9 |v|,
// doubled for the fp32 arithmetic before it) and mag is the magnitude of the
// terms that make up ref (they may cancel): f = 2^-7 when the math itself
// rounds such an intermediate to bf16 (the fp32 kernel and the float64
// reference may land on neighbouring bf16 values, one ulp <= 2^-7 |v|), else
// f = 2^-18 for the fp32 statistics and products (a few fp32 ulp).
// A wrong row, index or formula is off by O(1), far outside.
#include <gtest/gtest.h>

#include <torch/cuda.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "model/cuda/dit_fused.h"
#include "model/dit.h"
#include "model/rope.h"
#include "tests/model/golden_compare.h"

namespace {

using namespace wand::model;
using wand::test::rel_l2;

const at::Device kCuda(at::kCUDA, 0);

at::TensorOptions f32() { return at::TensorOptions().dtype(at::kFloat).device(kCuda); }

class FusedGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    if (!fused::available()) GTEST_SKIP() << "fused kernels not built (needs a CUDA LibTorch and nvcc)";
    at::globalContext().setAllowTF32CuBLAS(false);
    at::manual_seed(1234);
  }
  void TearDown() override {
    if (torch::cuda::is_available() && fused::available()) fused::set_enabled(true);
  }
};

at::Tensor d64(const at::Tensor& t) { return t.detach().cpu().to(at::kDouble); }
at::Tensor round_bf16(const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); }

const double kRounded = std::ldexp(1.0, -7), kFp32 = std::ldexp(1.0, -18);

// Elementwise check of Note [Fused test tolerances]; reports the worst element.
void expect_close(const at::Tensor& got, const at::Tensor& ref, const at::Tensor& mag, double f,
                  const std::string& what) {
  ASSERT_EQ(got.sizes(), ref.sizes()) << what;
  at::Tensor g = d64(got), r = d64(ref);
  at::Tensor bound = r.abs() * std::ldexp(1.0, -8) + d64(mag).abs() * f + 1e-6;
  at::Tensor excess = (g - r).abs() / bound;
  const double worst = excess.max().item<double>();
  EXPECT_TRUE(at::isfinite(g).all().item<bool>()) << what;
  EXPECT_LE(worst, 1.0) << what << ": worst |err| / bound = " << worst << " (rel L2 " << rel_l2(got, ref) << ")";
}

// LayerNorm without affine in float64 over the last dim.
at::Tensor ln64(const at::Tensor& x, double eps) {
  at::Tensor m = x.mean(-1, true);
  at::Tensor v = (x - m).pow(2).mean(-1, true);
  return (x - m) / (v + eps).sqrt();
}

// Rows [R, D] of `rows` per token ([S] index; undefined: row 0).
at::Tensor pick(const at::Tensor& rows, const at::Tensor& idx, int64_t S) {
  if (!idx.defined()) return rows.select(0, 0).unsqueeze(0).expand({S, rows.size(1)});
  return rows.index_select(0, idx.cpu());
}

struct Geo {
  int64_t rows, dim, R;
  bool x_bf16;
};

std::string name_of(const Geo& g) {
  return "S=" + std::to_string(g.rows) + " D=" + std::to_string(g.dim) + " R=" + std::to_string(g.R) +
         (g.x_bf16 ? " x=bf16" : " x=fp32");
}

const double kEps = 1e-6;

// x [S, D] with a row-dependent offset (the variance must not come from the mean).
at::Tensor make_x(int64_t S, int64_t D, bool bf16) {
  at::Tensor x = at::randn({S, D}, f32()) * 2 + at::linspace(-3, 3, S, f32()).unsqueeze(1);
  return bf16 ? x.to(at::kBFloat16) : x;
}

at::Tensor make_index(int64_t S, int64_t R) {
  if (R == 1) return at::Tensor();
  return at::randint(0, R, {S}, at::TensorOptions().dtype(at::kLong).device(kCuda));
}

const std::vector<Geo> kGeos = {
    {37, 64, 1, false}, {37, 64, 2, true},    {29, 5120, 1, false}, {29, 5120, 2, false},
    {29, 5120, 1, true}, {23, 3072, 2, false}, {31, 36, 2, false},   {31, 13, 1, true},  // 36, 13: D % 8 != 0
};

TEST_F(FusedGpu, LnModulateMatchesFloat64) {
  for (const Geo& g : kGeos) {
    at::Tensor x = make_x(g.rows, g.dim, g.x_bf16);
    at::Tensor shift = at::randn({g.R, g.dim}, f32()) * 0.5, scale = at::randn({g.R, g.dim}, f32()) * 0.3;
    at::Tensor idx = make_index(g.rows, g.R);
    at::Tensor got = fused::ln_modulate(x, shift, scale, idx, kEps);
    ASSERT_EQ(got.scalar_type(), at::kBFloat16);
    at::Tensor y = ln64(d64(x), kEps);
    if (g.x_bf16) y = round_bf16(y);  // block 0: LN output rounded to the input dtype first
    at::Tensor term = y * (1 + pick(d64(scale), idx, g.rows)), sh = pick(d64(shift), idx, g.rows);
    expect_close(got, sh + term, term.abs() + sh.abs(), g.x_bf16 ? kRounded : kFp32, "ln_modulate " + name_of(g));
  }
}

TEST_F(FusedGpu, MisalignedRowsTakeTheScalarPath) {
  // A view one element into its storage: not 16-byte aligned, so no vector loads.
  const int64_t S = 19, D = 5120;
  at::Tensor big = at::randn({S * D + 1}, f32());
  at::Tensor x = big.narrow(0, 1, S * D).view({S, D});
  at::Tensor shift = at::randn({1, D}, f32()), scale = at::randn({1, D}, f32()) * 0.3;
  at::Tensor got = fused::ln_modulate(x, shift, scale, {}, kEps);
  at::Tensor term = ln64(d64(x), kEps) * (1 + pick(d64(scale), {}, S)), sh = pick(d64(shift), {}, S);
  expect_close(got, sh + term, term.abs() + sh.abs(), kFp32, "ln_modulate misaligned");
}

TEST_F(FusedGpu, ResidualLnAffineMatchesFloat64) {
  for (const Geo& g : kGeos) {
    at::Tensor x = make_x(g.rows, g.dim, g.x_bf16);
    const at::Tensor x_before = x.clone();
    at::Tensor o = at::randn({g.rows, g.dim}, f32()).to(at::kBFloat16);
    at::Tensor gate = at::randn({g.R, g.dim}, f32()) * 0.2;
    at::Tensor w = 1 + at::randn({g.dim}, f32()) * 0.1, b = at::randn({g.dim}, f32()) * 0.05;
    at::Tensor idx = make_index(g.rows, g.R);
    auto [xn, n] = fused::residual_ln_affine(x, o, gate, idx, w, b, kEps, /*in_place=*/false);
    EXPECT_TRUE(at::equal(x, x_before)) << "the input must not change when not in place";
    ASSERT_EQ(xn.scalar_type(), at::kFloat);
    at::Tensor xr = d64(x) + d64(o) * pick(d64(gate), idx, g.rows);
    // One fp32 fma: within 2^-23 relative of the float64 value.
    EXPECT_LE(((d64(xn) - xr).abs() - xr.abs() * std::ldexp(1.0, -23) - 1e-30).max().item<double>(), 0.0)
        << "residual " << name_of(g);
    at::Tensor term = ln64(xr, kEps) * d64(w);
    expect_close(n, term + d64(b), term.abs() + d64(b).abs(), kFp32, "residual_ln_affine " + name_of(g));
  }
}

TEST_F(FusedGpu, ResidualLnModulateInPlaceWithoutGate) {
  for (const Geo& g : kGeos) {
    if (g.x_bf16) continue;  // in place needs the fp32 stream
    at::Tensor x = make_x(g.rows, g.dim, false);
    const at::Tensor x0 = d64(x);
    at::Tensor o = at::randn({g.rows, g.dim}, f32()).to(at::kBFloat16);
    at::Tensor shift = at::randn({g.R, g.dim}, f32()) * 0.5, scale = at::randn({g.R, g.dim}, f32()) * 0.3;
    at::Tensor idx = make_index(g.rows, g.R);
    auto [xn, n] = fused::residual_ln_modulate(x, o, {}, idx, shift, scale, kEps, /*in_place=*/true);
    EXPECT_EQ(xn.data_ptr(), x.data_ptr());
    at::Tensor xr = x0 + d64(o);
    EXPECT_LE(((d64(x) - xr).abs() - xr.abs() * std::ldexp(1.0, -23) - 1e-30).max().item<double>(), 0.0);
    at::Tensor term = ln64(xr, kEps) * (1 + pick(d64(scale), idx, g.rows)), sh = pick(d64(shift), idx, g.rows);
    expect_close(n, sh + term, term.abs() + sh.abs(), kFp32, "residual_ln_modulate " + name_of(g));
  }
}

TEST_F(FusedGpu, ResidualAddOnTokenChunk) {
  // The FFN's last step on a chunk [s0, s1) of a [1, S, D] stream, with the chunk's row indices.
  const int64_t S = 45, D = 5120, s0 = 13, s1 = 40, R = 2;
  at::Tensor x = at::randn({1, S, D}, f32());
  const at::Tensor x0 = d64(x);
  at::Tensor y = at::randn({1, s1 - s0, D}, f32()).to(at::kBFloat16);
  at::Tensor gate = at::randn({R, D}, f32());
  at::Tensor idx = make_index(S, R);
  fused::residual_add(x.slice(1, s0, s1), y, gate, idx.slice(0, s0, s1), /*in_place=*/true);
  at::Tensor ref = x0.clone();
  ref.select(0, 0).slice(0, s0, s1).add_(d64(y).select(0, 0) * pick(d64(gate), idx.slice(0, s0, s1), s1 - s0));
  EXPECT_LE(((d64(x) - ref).abs() - ref.abs() * std::ldexp(1.0, -23) - 1e-30).max().item<double>(), 0.0);
  EXPECT_TRUE(at::equal(d64(x).select(0, 0).slice(0, 0, s0), x0.select(0, 0).slice(0, 0, s0)));
  EXPECT_TRUE(at::equal(d64(x).select(0, 0).slice(0, s1, S), x0.select(0, 0).slice(0, s1, S)));
}

// RMSNorm (+ RoPE) in float64 with the bf16 roundings of the unfused path.
at::Tensor rms_ref(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor xd = d64(x);
  at::Tensor f = 1.0 / ((xd * xd).mean(-1, true) + eps).sqrt();
  return round_bf16(round_bf16(xd * f) * d64(w));
}

TEST_F(FusedGpu, RmsNormRopeMatchesFloat64) {
  struct Case {
    int64_t gf, gh, gw, pad, heads, hd;
  };
  // 40 x 128 = 5120 (A14B), 2 x 32 = 64 (tiny), 3 x 12 = 36 (D % 8 != 0: pair path).
  const std::vector<Case> cases = {{2, 3, 4, 5, 40, 128}, {3, 2, 3, 4, 2, 32}, {1, 4, 5, 3, 3, 12}};
  for (const Case& c : cases) {
    const int64_t L = c.gf * c.gh * c.gw, S = L + c.pad, D = c.heads * c.hd;
    const std::string what = "D=" + std::to_string(D) + " hd=" + std::to_string(c.hd);
    at::Tensor table = rope_token_table(rope_freqs(c.hd), c.gf, c.gh, c.gw, S, at::kFloat).to(kCuda);
    at::Tensor x = (at::randn({1, S, D}, f32()) * 3).to(at::kBFloat16);
    at::Tensor w = (1 + at::randn({D}, f32()) * 0.1).to(at::kBFloat16);
    at::Tensor plain = fused::rms_norm_rope(x, w, {}, c.hd, kEps, /*in_place=*/false);
    at::Tensor rot = fused::rms_norm_rope(x, w, table, c.hd, kEps, /*in_place=*/false);
    at::Tensor n = rms_ref(x, w, kEps);  // [1, S, D]
    expect_close(plain, n, n, kRounded, "rms_norm " + what);
    // Rotation of adjacent pairs in float64 with the fp32 table.
    at::Tensor np = n.view({S, c.heads, c.hd / 2, 2});
    at::Tensor t = d64(table).unsqueeze(1);  // [S, 1, hd/2, 2]
    at::Tensor re = np.select(3, 0), im = np.select(3, 1), co = t.select(3, 0), si = t.select(3, 1);
    at::Tensor ref = at::stack({re * co - im * si, re * si + im * co}, 3).view({1, S, D});
    expect_close(rot, ref, (re.abs() + im.abs()).unsqueeze(3).expand({S, c.heads, c.hd / 2, 2}).reshape({1, S, D}),
                 kRounded, "rms_norm_rope " + what);
    // Padding rows are not rotated; in place writes into x.
    EXPECT_TRUE(at::equal(rot.slice(1, L, S), plain.slice(1, L, S))) << what;
    at::Tensor x2 = x.clone();
    at::Tensor inplace = fused::rms_norm_rope(x2, w, table, c.hd, kEps, /*in_place=*/true);
    EXPECT_EQ(inplace.data_ptr(), x2.data_ptr());
    EXPECT_TRUE(at::equal(x2, rot)) << what;
  }
}

TEST_F(FusedGpu, LinearGeluTanhMatchesFloat64) {
  at::Tensor x = at::randn({1, 45, 256}, f32()).to(at::kBFloat16);
  at::Tensor w = (at::randn({320, 256}, f32()) / 16).to(at::kBFloat16), b = (at::randn({320}, f32()) * 0.1).to(at::kBFloat16);
  at::Tensor got = fused::linear_gelu_tanh(x, w, b);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{1, 45, 320}));
  at::Tensor z = at::matmul(d64(x), d64(w).t()) + d64(b);
  at::Tensor ref = 0.5 * z * (1 + at::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z.pow(3))));
  // The fp32 GEMM accumulation: a few fp32 ulp of the sum of |products| (<= 2^-18 of it);
  // cuBLASLt's epilogue may evaluate tanh approximately: allow 2^-10 |z| (256 * 2^-18).
  expect_close(got, ref, at::matmul(d64(x).abs(), d64(w).abs().t()) + d64(b).abs() + z.abs() * 256, kFp32,
               "linear_gelu_tanh");
  at::Tensor unfused = at::gelu(at::linear(x, w, b), "tanh");
  EXPECT_LT(rel_l2(got, unfused), 5e-3);
}

TEST_F(FusedGpu, RejectsBadArguments) {
  at::Tensor x = at::randn({4, 64}, f32());
  at::Tensor rows = at::randn({2, 64}, f32());
  EXPECT_THROW(fused::ln_modulate(x, rows, rows, {}, kEps), wand::Error);  // R = 2 needs row_of_token
  EXPECT_THROW(fused::ln_modulate(x.cpu(), rows, rows, make_index(4, 2), kEps), wand::Error);
  EXPECT_THROW(fused::rms_norm_rope(x, x[0], {}, 32, kEps, false), wand::Error);  // fp32 x
  EXPECT_THROW(fused::residual_add(x.to(at::kBFloat16), x.to(at::kBFloat16), {}, {}, /*in_place=*/true), wand::Error);
}

// ---- whole blocks: fused vs unfused ----

// In-memory tensors on the GPU, scaled like make::random_dit_tensor.
class GpuSource : public TensorSource {
 public:
  explicit GpuSource(const WanConfig& cfg) {
    for (const auto& list : {cfg.non_block_tensors(), cfg.block_tensors(0)}) {
      for (const auto& [n, s] : list) put(n, s, cfg.dim);
    }
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> v;
    for (const auto& kv : t_) v.push_back(kv.first);
    return v;
  }
  bool contains(const std::string& n) const override { return t_.count(n) != 0; }
  const TensorInfo& info(const std::string& n) const override {
    auto it = info_.find(n);
    if (it == info_.end()) throw wand::Error(wand::ErrorCode::kModelFormat, "<gpu>: no key '" + n + "'");
    return it->second;
  }
  at::Tensor load(const std::string& n, c10::optional<at::ScalarType> d) const override {
    const at::Tensor& t = t_.at(n);
    return d ? t.to(*d) : t;
  }
  std::string describe() const override { return "<gpu>"; }

 private:
  static bool ends_with(const std::string& s, const std::string& e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
  }
  void put(const std::string& n, const std::vector<int64_t>& shape, int64_t dim) {
    at::Tensor t = at::randn(shape, f32());
    if (ends_with(n, "modulation")) {
      t.mul_(1.0 / std::sqrt(static_cast<double>(dim)));
    } else if (ends_with(n, "norm_q.weight") || ends_with(n, "norm_k.weight") || ends_with(n, "norm3.weight")) {
      t.mul_(0.1).add_(1.0);
    } else if (ends_with(n, ".bias")) {
      t.mul_(0.05);
    } else {
      t.mul_(1.0 / std::sqrt(static_cast<double>(t.numel() / shape[0])));
    }
    TensorInfo ti;
    ti.name = n;
    ti.dtype = at::kFloat;
    ti.shape = shape;
    ti.path = "<gpu>";
    ti.nbytes = t.numel() * 4;
    info_[n] = ti;
    t_[n] = t;
  }
  std::map<std::string, at::Tensor> t_;
  std::map<std::string, TensorInfo> info_;
};

struct BlockCase {
  std::string preset;
  int64_t f, h, w, pad;  // latent F, H, W; seq_len = F * H/2 * W/2 + pad
  bool per_token_t;      // ti2v: two distinct timesteps (R = 2)
};

void run_block_case(const BlockCase& bc) {
  const WanConfig cfg = WanConfig::from_preset(bc.preset, 256);
  GpuSource src(cfg);
  WanDit dit = WanDit::load(src, cfg, RunDtype::kBFloat16, kCuda, /*load_blocks=*/false);
  const DitBlockWeights w = DitBlockWeights::from(src, 0, RunDtype::kBFloat16, kCuda);
  const int64_t L = bc.f * (bc.h / 2) * (bc.w / 2), S = L + bc.pad;
  at::Tensor lat = at::randn({cfg.in_dim, bc.f, bc.h, bc.w}, f32());
  at::Tensor t = at::full({1}, 900.0, f32());
  if (bc.per_token_t) {  // first latent frame at t = 0 (the ti2v image frame), the rest at 900
    t = at::full({S}, 900.0, f32());
    t.slice(0, 0, (bc.h / 2) * (bc.w / 2)).fill_(0.0);
  }
  at::Tensor ctx = at::randn({37, cfg.text_dim}, f32()) * 0.5;
  DitInputs in = dit.embed(lat, t, ctx, S);
  ASSERT_EQ(in.row_of_token.defined(), bc.per_token_t);
  const std::string what = bc.preset + " S=" + std::to_string(S) + " L=" + std::to_string(L);
  // Block 0 sees the bf16 patch embedding; later blocks the fp32 stream.
  at::Tensor x1 = at::randn({1, S, cfg.dim}, f32()) + in.tokens.to(at::kFloat);
  for (const at::Tensor& x : {in.tokens, x1}) {
    const at::Tensor x_before = x.clone();
    fused::set_enabled(false);
    at::Tensor ref = dit.block(1, x, in, w);
    fused::set_enabled(true);
    at::Tensor got = dit.block(1, x, in, w);
    EXPECT_TRUE(at::equal(x, x_before)) << what << ": the block modified its input";
    const std::string sub = what + (x.scalar_type() == at::kFloat ? " fp32 input" : " bf16 input");
    ASSERT_EQ(got.scalar_type(), at::kFloat) << sub;
    EXPECT_TRUE(at::isfinite(got).all().item<bool>()) << sub;
    const at::Tensor xf = x.to(at::kFloat);
    const double e_out = rel_l2(got, ref), e_upd = rel_l2(got - xf, ref - xf);
    std::cout << "[ fused ] " << sub << ": output rel L2 " << e_out << ", update rel L2 " << e_upd << "\n";
    EXPECT_LT(e_out, 2e-3) << sub;
    // The block's update alone (without the residual that dominates the output).
    EXPECT_LT(e_upd, 2e-2) << sub;
  }
  // Token chunks in the FFN and projections give the same result.
  fused::set_enabled(true);
  at::Tensor whole = dit.block(1, x1, in, w);
  dit.set_chunk_tokens(S / 3 + 1);
  at::Tensor chunked = dit.block(1, x1, in, w);
  EXPECT_LT(rel_l2(chunked - x1, whole - x1), 1e-2) << what << " chunked";
}

TEST_F(FusedGpu, TinyBlockPadded) { run_block_case({"tiny-t2v", 3, 10, 14, 11, false}); }
TEST_F(FusedGpu, TinyTi2vPerTokenModulation) { run_block_case({"tiny-ti2v", 3, 6, 8, 5, true}); }
TEST_F(FusedGpu, Ti2v5bWidthPerTokenModulation) { run_block_case({"ti2v-5B", 3, 8, 10, 7, true}); }
TEST_F(FusedGpu, A14bWidthBlockPadded) { run_block_case({"t2v-A14B", 5, 12, 14, 19, false}); }

}  // namespace
