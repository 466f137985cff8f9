// Comparison of a computed golden output with its reference, shared by the
// model families' golden tests.
//
//   auto r = wand::test::compare_golden("pred", got, ref, spec["tolerances_fp32"]);
//   EXPECT_TRUE(r.ok) << r.message;
//
// Rule (golden README): |got - ref| <= atol + rtol * |ref| elementwise, with the
// case's tolerances_fp32 entry; integer and bool tensors must match exactly;
// a float output without an entry uses atol = 1e-6 * max|ref| + 1e-12, rtol = 1e-4.
// The message reports the worst element (index, got, ref, allowed).
#pragma once

#include <cmath>
#include <sstream>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace wand::test {

struct GoldenCompare {
  bool ok = false;
  double max_abs_err = 0.0;
  double worst_ratio = 0.0;  // max of err / allowed (<= 1 passes)
  std::string message;
};

inline GoldenCompare compare_golden(const std::string& name, const at::Tensor& got_in, const at::Tensor& ref_in,
                                    const nlohmann::json& tolerances) {
  GoldenCompare r;
  std::ostringstream os;
  at::Tensor got = got_in.detach().cpu().contiguous();
  at::Tensor ref = ref_in.detach().cpu().contiguous();
  if (got.sizes() != ref.sizes()) {
    os << name << ": shape " << got.sizes() << " != reference " << ref.sizes();
    r.message = os.str();
    return r;
  }
  const bool exact = !at::isFloatingType(ref.scalar_type());
  if (exact) {
    at::Tensor ne = got.to(at::kLong).ne(ref.to(at::kLong));
    const int64_t bad = ne.sum().item<int64_t>();
    r.ok = bad == 0;
    if (!r.ok) {
      const int64_t i = ne.flatten().to(at::kByte).argmax().item<int64_t>();
      os << name << ": " << bad << " of " << ref.numel() << " values differ (exact); first at flat index " << i
         << ": got " << got.flatten()[i].item<double>() << ", ref " << ref.flatten()[i].item<double>();
    } else {
      os << name << ": exact match";
    }
    r.worst_ratio = r.ok ? 0.0 : 1e30;
    r.message = os.str();
    return r;
  }
  at::Tensor g = got.to(at::kDouble).flatten(), f = ref.to(at::kDouble).flatten();
  const double max_ref = f.numel() ? f.abs().max().item<double>() : 0.0;
  double atol = 1e-6 * max_ref + 1e-12, rtol = 1e-4;
  if (tolerances.is_object() && tolerances.contains(name)) {
    atol = tolerances[name].at("atol").get<double>();
    rtol = tolerances[name].at("rtol").get<double>();
  }
  at::Tensor err = (g - f).abs();
  at::Tensor allowed = atol + rtol * f.abs();
  at::Tensor ratio = err / allowed;
  // NaN anywhere fails.
  const bool finite = at::isfinite(g).all().item<bool>() || !at::isfinite(f).all().item<bool>();
  const int64_t worst = f.numel() ? ratio.argmax().item<int64_t>() : 0;
  r.max_abs_err = f.numel() ? err.max().item<double>() : 0.0;
  r.worst_ratio = f.numel() ? ratio.max().item<double>() : 0.0;
  r.ok = finite && !std::isnan(r.worst_ratio) && r.worst_ratio <= 1.0;
  os << name << ": max|err| " << r.max_abs_err << ", worst err/allowed " << r.worst_ratio << " at flat index "
     << worst;
  if (f.numel()) {
    os << " (got " << g[worst].item<double>() << ", ref " << f[worst].item<double>() << ", allowed "
       << allowed[worst].item<double>() << ")";
  }
  os << " atol " << atol << " rtol " << rtol << (finite ? "" : " [non-finite values]");
  r.message = os.str();
  return r;
}

// Relative L2 error ||got - ref|| / ||ref|| in float64 (for bf16 parity).
inline double rel_l2(const at::Tensor& got, const at::Tensor& ref) {
  at::Tensor g = got.detach().cpu().to(at::kDouble), f = ref.detach().cpu().to(at::kDouble);
  return (g - f).norm().item<double>() / std::max(f.norm().item<double>(), 1e-300);
}

}  // namespace wand::test
