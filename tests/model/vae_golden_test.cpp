// Golden cases vae21 / vae22: our fp32 CPU encode/decode against the official
// code's float64 references, with each output's tolerances_fp32 from case.json
// (|ours - ref| <= atol + rtol * |ref| elementwise, numpy.allclose style).
#include <gtest/gtest.h>

#include <filesystem>

#include "model/golden/golden.h"
#include "model/safetensors.h"
#include "tests/golden_dir.h"

namespace {

namespace fs = std::filesystem;

void check_case(const std::string& name) {
  const fs::path dir = wand::test::golden_root() / name;
  WAND_REQUIRE_DATA(dir / "case.json");
  const auto c = wand::model::golden::load_case(dir);
  const auto ours = wand::model::golden::run_case(dir);
  const auto ref = wand::model::load_safetensors((dir / "outputs.safetensors").string());
  for (const auto& out : wand::model::golden::expected_outputs(c)) {
    SCOPED_TRACE(name + "/" + out);
    ASSERT_TRUE(ours.count(out));
    ASSERT_TRUE(ref.count(out));
    at::Tensor a = ours.at(out).to(at::kDouble);
    at::Tensor r = ref.at(out).to(at::kDouble);
    ASSERT_EQ(a.sizes(), r.sizes());
    double atol = 0.0, rtol = 0.0;
    const auto& tol = c.spec["tolerances_fp32"];
    if (tol.contains(out)) {
      atol = tol[out].at("atol").get<double>();
      rtol = tol[out].at("rtol").get<double>();
    } else {
      // Constants (latents_mean / latents_inv_std): float64 from the same literals.
      atol = 1e-12;
      rtol = 1e-12;
    }
    at::Tensor err = (a - r).abs();
    at::Tensor excess = err - (atol + rtol * r.abs());
    const double max_err = err.max().item<double>();
    const double rel_l2 = ((a - r).norm() / r.norm().clamp_min(1e-30)).item<double>();
    std::printf("%s %-24s max_abs=%.3g rel_l2=%.3g atol=%.1g\n", name.c_str(), out.c_str(), max_err,
                rel_l2, atol);
    EXPECT_LE(excess.max().item<double>(), 0.0) << "max abs err " << max_err << " rel L2 " << rel_l2;
  }
}

TEST(VaeGolden, Vae21) { check_case("vae21"); }
TEST(VaeGolden, Vae22) { check_case("vae22"); }

}  // namespace
