#include "model/rope.h"

#include <string>

#include "common/error.h"

namespace wand::model {

at::Tensor rope_params(int64_t len, int64_t n, double theta) {
  WAND_ASSERT(n % 2 == 0, "rope_params: odd dimension " + std::to_string(n));
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  // 1 / theta^(arange(0, n, 2) / n), float64, as the official code.
  at::Tensor inv = 1.0 / at::pow(theta, at::arange(0, n, 2, f64).div(static_cast<double>(n)));
  at::Tensor ang = at::outer(at::arange(len, f64), inv);  // [len, n/2]
  return at::stack({at::cos(ang), at::sin(ang)}, -1);     // [len, n/2, 2]
}

at::Tensor rope_freqs(int64_t head_dim, int64_t len, double theta) {
  const int64_t d = head_dim;
  return at::cat({rope_params(len, d - 4 * (d / 6), theta), rope_params(len, 2 * (d / 6), theta),
                  rope_params(len, 2 * (d / 6), theta)},
                 1);
}

at::Tensor rope_token_table(const at::Tensor& freqs, int64_t grid_f, int64_t grid_h, int64_t grid_w,
                            int64_t seq_len, at::ScalarType dtype) {
  const int64_t c = freqs.size(1);
  const int64_t c1 = c / 3, c0 = c - 2 * c1;
  const int64_t n = grid_f * grid_h * grid_w;
  if (grid_f > freqs.size(0) || grid_h > freqs.size(0) || grid_w > freqs.size(0)) {
    throw Error(ErrorCode::kBadRequest, "rope: grid (" + std::to_string(grid_f) + ", " + std::to_string(grid_h) + ", " +
                                            std::to_string(grid_w) + ") exceeds the table length " +
                                            std::to_string(freqs.size(0)));
  }
  if (seq_len < n) {
    throw Error(ErrorCode::kBadRequest, "rope: seq_len " + std::to_string(seq_len) + " < tokens " + std::to_string(n));
  }
  const auto i64 = at::TensorOptions().dtype(at::kLong).device(freqs.device());
  at::Tensor fi = at::arange(grid_f, i64).repeat_interleave(grid_h * grid_w);
  at::Tensor hi = at::arange(grid_h, i64).repeat_interleave(grid_w).repeat({grid_f});
  at::Tensor wi = at::arange(grid_w, i64).repeat({grid_f * grid_h});
  at::Tensor tab = at::cat({freqs.slice(1, 0, c0).index_select(0, fi), freqs.slice(1, c0, c0 + c1).index_select(0, hi),
                            freqs.slice(1, c0 + c1, c).index_select(0, wi)},
                           1);  // [n, c, 2]
  if (seq_len > n) {
    at::Tensor pad = at::zeros({seq_len - n, c, 2}, freqs.options());
    pad.select(2, 0).fill_(1.0);
    tab = at::cat({tab, pad}, 0);
  }
  return tab.to(dtype).contiguous();
}

at::Tensor rope_apply(const at::Tensor& x, const at::Tensor& table, at::ScalarType out_dtype) {
  const int64_t d = x.size(-1);
  const int64_t s = x.size(-3);
  WAND_ASSERT(table.size(0) == s && table.size(1) * 2 == d, "rope_apply: table does not fit the input");
  std::vector<int64_t> shape = x.sizes().vec();
  std::vector<int64_t> pairs = shape;
  pairs.back() = d / 2;
  pairs.push_back(2);
  // Complex multiply of adjacent pairs (as the official torch.view_as_complex code).
  at::Tensor xr = x.to(table.scalar_type()).reshape(pairs).contiguous();  // [..., S, N, d/2, 2]
  at::Tensor tc = at::view_as_complex(table.contiguous()).unsqueeze(1);   // [S, 1, d/2]
  at::Tensor out = at::view_as_real(at::view_as_complex(xr) * tc);
  return out.reshape(shape).to(out_dtype);
}

}  // namespace wand::model
