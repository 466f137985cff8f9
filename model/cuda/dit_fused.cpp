// model/cuda/dit_fused.h: argument checks and output allocation (plain
// LibTorch, built everywhere); the launch itself is detail::launch.
#include "model/cuda/dit_fused.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/error.h"
#include "model/cuda/dit_fused_launch.h"

namespace wand::model::fused {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::kInternal, "fused dit: " + what);
}

std::string describe(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  return std::string(c10::toString(t.scalar_type())) + " " + shape_str(t.sizes()) + " on " + t.device().str() +
         (t.is_contiguous() ? "" : " (not contiguous)");
}

// A contiguous CUDA tensor of `dtype` whose last dim is `dim`, on `device`. Returns its rows.
int64_t check_tokens(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dim,
                     const at::Device& device) {
  require(t.defined() && t.is_cuda() && t.device() == device && t.scalar_type() == dtype && t.dim() >= 1 &&
              t.size(-1) == dim && t.is_contiguous(),
          std::string(name) + " must be a contiguous " + c10::toString(dtype) + " [..., " + std::to_string(dim) +
              "] tensor on " + device.str() + ", got " + describe(t));
  return t.numel() / dim;
}

// Per-timestep rows [R, dim] fp32 on device. Returns R.
int64_t check_rows(const at::Tensor& t, const char* name, int64_t dim, const at::Device& device) {
  require(t.defined() && t.is_cuda() && t.device() == device && t.scalar_type() == at::kFloat && t.dim() == 2 &&
              t.size(1) == dim && t.size(0) >= 1 && t.is_contiguous(),
          std::string(name) + " must be contiguous fp32 rows [R, " + std::to_string(dim) + "] on " + device.str() +
              ", got " + describe(t));
  return t.size(0);
}

// row_of_token: undefined (every token uses row 0, so R must be 1) or [rows] int64.
// Its values (< R) are not checked: that would need a device sync.
const int64_t* check_row_index(const at::Tensor& idx, int64_t rows, int64_t R, const at::Device& device) {
  if (!idx.defined()) {
    require(R == 1, std::to_string(R) + " rows of modulation but no row_of_token");
    return nullptr;
  }
  require(idx.is_cuda() && idx.device() == device && idx.scalar_type() == at::kLong && idx.dim() == 1 &&
              idx.size(0) == rows && idx.is_contiguous(),
          "row_of_token must be contiguous int64 [" + std::to_string(rows) + "] on " + device.str() + ", got " +
              describe(idx));
  return idx.data_ptr<int64_t>();
}

uint16_t* bf16_ptr(const at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr()); }

int device_index(const at::Tensor& t) { return static_cast<int>(t.get_device()); }

// The shared body of the residual functions and the LayerNorms.
struct RowNormCall {
  at::Tensor x, o, gate, row_of_token, shift, scale, w, b;
  kernels::RowNorm norm = kernels::RowNorm::kNone;
  double eps = 1e-6;
  bool in_place = false;
};

// Returns (x_new or undefined, normalised output or undefined).
std::pair<at::Tensor, at::Tensor> run_row_norm(const RowNormCall& c) {
  require(c.x.defined() && c.x.is_cuda(), "x must be a CUDA tensor, got " + describe(c.x));
  const at::Device dev = c.x.device();
  const int64_t D = c.x.size(-1);
  require(supports_dim(D), "row width " + std::to_string(D) + " is outside 1.." + std::to_string(kernels::kMaxDim));
  const bool x_bf16 = c.x.scalar_type() == at::kBFloat16;
  const int64_t S = check_tokens(c.x, "x", x_bf16 ? at::kBFloat16 : at::kFloat, D, dev);
  kernels::RowNormArgs a;
  a.x = c.x.data_ptr();
  a.x_bf16 = x_bf16;
  a.rows = S;
  a.dim = D;
  a.eps = static_cast<float>(c.eps);
  a.norm = c.norm;
  // Block 0's LN1 of the bf16 patch embedding is rounded to bf16 first; a residual
  // update normalises the new fp32 stream, which is not rounded.
  a.round_ln = x_bf16 && !c.o.defined();
  int64_t R = 1;
  bool any_rows = false;
  at::Tensor x_new;
  if (c.o.defined()) {
    check_tokens(c.o, "o", at::kBFloat16, D, dev);
    require(c.o.numel() == c.x.numel(), "o " + describe(c.o) + " does not match x " + describe(c.x));
    require(!(c.in_place && x_bf16), "an in-place residual update needs an fp32 x, got " + describe(c.x));
    a.o = bf16_ptr(c.o);
    if (c.gate.defined()) {
      R = check_rows(c.gate, "gate", D, dev);
      any_rows = true;
      a.gate = c.gate.data_ptr<float>();
    }
    x_new = c.in_place ? c.x : at::empty(c.x.sizes(), c.x.options().dtype(at::kFloat));
    a.x_out = x_new.data_ptr<float>();
  }
  at::Tensor out;
  if (c.norm == kernels::RowNorm::kModulate) {
    const int64_t r1 = check_rows(c.shift, "shift", D, dev), r2 = check_rows(c.scale, "scale", D, dev);
    require(r1 == r2 && (!any_rows || r1 == R),
            "shift, scale (and gate) must have the same number of rows, got " + describe(c.shift) + ", " +
                describe(c.scale) + (any_rows ? ", " + describe(c.gate) : std::string()));
    R = r1;
    any_rows = true;
    a.shift = c.shift.data_ptr<float>();
    a.scale = c.scale.data_ptr<float>();
  } else if (c.norm == kernels::RowNorm::kAffine) {
    check_tokens(c.w, "norm weight", at::kFloat, D, dev);
    check_tokens(c.b, "norm bias", at::kFloat, D, dev);
    require(c.w.numel() == D && c.b.numel() == D, "norm weight / bias must be [" + std::to_string(D) + "]");
    a.weight = c.w.data_ptr<float>();
    a.bias = c.b.data_ptr<float>();
  }
  if (c.norm != kernels::RowNorm::kNone) {
    out = at::empty(c.x.sizes(), c.x.options().dtype(at::kBFloat16));
    a.out = bf16_ptr(out);
  }
  if (any_rows) a.row_of_token = check_row_index(c.row_of_token, S, R, dev);
  detail::launch(a, device_index(c.x));
  return {x_new, out};
}

}  // namespace

bool available() { return detail::kernels_built(); }

namespace {
// -1: not overridden (WAND_FUSED decides), 0 / 1: set_enabled.
std::atomic<int> g_override{-1};
}  // namespace

bool enabled() {
  static const bool env_on = [] {
    const char* v = std::getenv("WAND_FUSED");
    return !(v != nullptr && std::strcmp(v, "0") == 0);
  }();
  const int o = g_override.load(std::memory_order_relaxed);
  return available() && (o < 0 ? env_on : o == 1);
}

void set_enabled(bool on) { g_override.store(on ? 1 : 0, std::memory_order_relaxed); }

bool supports_dim(int64_t dim) { return dim >= 1 && dim <= kernels::kMaxDim; }

at::Tensor ln_modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale,
                       const at::Tensor& row_of_token, double eps) {
  RowNormCall c;
  c.x = x;
  c.shift = shift;
  c.scale = scale;
  c.row_of_token = row_of_token;
  c.norm = kernels::RowNorm::kModulate;
  c.eps = eps;
  return run_row_norm(c).second;
}

at::Tensor ln_affine(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  require(!x.defined() || x.scalar_type() == at::kFloat, "ln_affine takes an fp32 x, got " + describe(x));
  RowNormCall c;
  c.x = x;
  c.w = w;
  c.b = b;
  c.norm = kernels::RowNorm::kAffine;
  c.eps = eps;
  return run_row_norm(c).second;
}

at::Tensor residual_add(const at::Tensor& x, const at::Tensor& o, const at::Tensor& gate,
                        const at::Tensor& row_of_token, bool in_place) {
  require(o.defined(), "residual_add needs o");
  RowNormCall c;
  c.x = x;
  c.o = o;
  c.gate = gate;
  c.row_of_token = row_of_token;
  c.in_place = in_place;
  return run_row_norm(c).first;
}

std::pair<at::Tensor, at::Tensor> residual_ln_modulate(const at::Tensor& x, const at::Tensor& o,
                                                       const at::Tensor& gate, const at::Tensor& row_of_token,
                                                       const at::Tensor& shift, const at::Tensor& scale, double eps,
                                                       bool in_place) {
  require(o.defined(), "residual_ln_modulate needs o");
  RowNormCall c;
  c.x = x;
  c.o = o;
  c.gate = gate;
  c.row_of_token = row_of_token;
  c.shift = shift;
  c.scale = scale;
  c.norm = kernels::RowNorm::kModulate;
  c.eps = eps;
  c.in_place = in_place;
  return run_row_norm(c);
}

std::pair<at::Tensor, at::Tensor> residual_ln_affine(const at::Tensor& x, const at::Tensor& o,
                                                     const at::Tensor& gate, const at::Tensor& row_of_token,
                                                     const at::Tensor& w, const at::Tensor& b, double eps,
                                                     bool in_place) {
  require(o.defined(), "residual_ln_affine needs o");
  RowNormCall c;
  c.x = x;
  c.o = o;
  c.gate = gate;
  c.row_of_token = row_of_token;
  c.w = w;
  c.b = b;
  c.norm = kernels::RowNorm::kAffine;
  c.eps = eps;
  c.in_place = in_place;
  return run_row_norm(c);
}

at::Tensor rms_norm_rope(const at::Tensor& x, const at::Tensor& w, const at::Tensor& table, int64_t head_dim,
                         double eps, bool in_place) {
  require(x.defined() && x.is_cuda(), "x must be a CUDA tensor, got " + describe(x));
  const at::Device dev = x.device();
  const int64_t D = x.size(-1);
  require(supports_dim(D) && D % 2 == 0,
          "row width " + std::to_string(D) + " must be even and at most " + std::to_string(kernels::kMaxDim));
  const int64_t S = check_tokens(x, "x", at::kBFloat16, D, dev);
  check_tokens(w, "rms weight", at::kBFloat16, D, dev);
  require(w.numel() == D, "rms weight must be [" + std::to_string(D) + "], got " + describe(w));
  kernels::RmsNormRopeArgs a;
  a.x = bf16_ptr(x);
  a.weight = bf16_ptr(w);
  a.rows = S;
  a.dim = D;
  a.eps = static_cast<float>(eps);
  if (table.defined()) {
    require(head_dim > 0 && head_dim % 2 == 0 && D % head_dim == 0,
            "head_dim " + std::to_string(head_dim) + " must be even and divide " + std::to_string(D));
    require(table.is_cuda() && table.device() == dev && table.scalar_type() == at::kFloat && table.dim() == 3 &&
                table.size(0) == S && table.size(1) == head_dim / 2 && table.size(2) == 2 && table.is_contiguous(),
            "rope table must be contiguous fp32 [" + std::to_string(S) + ", " + std::to_string(head_dim / 2) +
                ", 2] on " + dev.str() + ", got " + describe(table));
    a.table = table.data_ptr<float>();
    a.head_dim = head_dim;
  }
  at::Tensor out = in_place ? x : at::empty_like(x);
  a.out = bf16_ptr(out);
  detail::launch(a, device_index(x));
  return out;
}

at::Tensor linear_gelu_tanh(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  // CUDA only: LibTorch's CPU _addmm_activation applies the exact (erf) GELU, not tanh.
  require(x.defined() && x.is_cuda() && x.dim() >= 1, "linear_gelu_tanh: x must be a CUDA tensor, got " + describe(x));
  const int64_t K = x.size(-1);
  require(w.defined() && w.dim() == 2 && w.size(1) == K && b.defined() && b.dim() == 1 && b.size(0) == w.size(0) &&
              w.scalar_type() == x.scalar_type() && b.scalar_type() == x.scalar_type(),
          "linear_gelu_tanh: w [N, " + std::to_string(K) + "] and b [N] in x's dtype expected, got x " + describe(x) +
              ", w " + describe(w) + ", b " + describe(b));
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.size(0);
  at::Tensor h = at::_addmm_activation(b, x.reshape({-1, K}), w.t(), /*beta=*/1, /*alpha=*/1, /*use_gelu=*/true);
  return h.view(shape);
}

}  // namespace wand::model::fused
