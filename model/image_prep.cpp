#include "model/image_prep.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "common/error.h"
#include "model/video.h"

namespace wand::model {

namespace {

// Binary PPM (P6, maxval 255). Returns an undefined tensor when `bytes` is not a PPM.
at::Tensor read_ppm(const std::vector<std::uint8_t>& bytes) {
  if (bytes.size() < 2 || bytes[0] != 'P' || bytes[1] != '6') return {};
  std::size_t pos = 2;
  auto next_int = [&](const char* field) -> int64_t {
    // Skip whitespace and comments.
    while (pos < bytes.size()) {
      if (bytes[pos] == '#') {
        while (pos < bytes.size() && bytes[pos] != '\n') ++pos;
      } else if (std::isspace(bytes[pos])) {
        ++pos;
      } else {
        break;
      }
    }
    int64_t v = 0;
    std::size_t start = pos;
    while (pos < bytes.size() && std::isdigit(bytes[pos]) && v < (int64_t{1} << 40)) v = v * 10 + (bytes[pos++] - '0');
    if (pos == start) throw Error(ErrorCode::kBadRequest, std::string("image: PPM header has no ") + field);
    return v;
  };
  const int64_t w = next_int("width"), h = next_int("height"), maxval = next_int("maxval");
  if (maxval != 255) throw Error(ErrorCode::kBadRequest, "image: PPM maxval " + std::to_string(maxval) + " (only 255)");
  if (w <= 0 || h <= 0 || w > 16384 || h > 16384) {
    throw Error(ErrorCode::kBadRequest, "image: PPM size " + std::to_string(w) + "x" + std::to_string(h) + " out of range");
  }
  ++pos;  // the single whitespace byte after maxval
  const std::size_t need = static_cast<std::size_t>(w * h * 3);
  if (pos > bytes.size() || bytes.size() - pos < need) {
    throw Error(ErrorCode::kBadRequest, "image: PPM truncated (" + std::to_string(bytes.size() - std::min(pos, bytes.size())) +
                                            " of " + std::to_string(need) + " pixel bytes)");
  }
  at::Tensor t = at::empty({h, w, 3}, at::kByte);
  std::memcpy(t.data_ptr(), bytes.data() + pos, need);
  return t;
}

// Python's round() for a non-negative double: half to even.
int64_t round_half_even(double x) {
  const double f = std::floor(x);
  const double d = x - f;
  if (d > 0.5) return static_cast<int64_t>(f) + 1;
  if (d < 0.5) return static_cast<int64_t>(f);
  const int64_t i = static_cast<int64_t>(f);
  return i % 2 == 0 ? i : i + 1;
}

// Pillow Resample.c.
constexpr int kPrecisionBits = 32 - 8 - 2;

double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}
double lanczos_filter(double x) {
  if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;    // [out, 2]: xmin, count
  std::vector<int32_t> kk;    // [out, ksize] fixed point
};

Coeffs precompute_coeffs(int in_size, int out_size) {
  const double in0 = 0.0, in1 = in_size;
  double filterscale = (in1 - in0) / out_size;
  const double scale = filterscale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = 3.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
  std::vector<double> pre(static_cast<std::size_t>(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &pre[static_cast<std::size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double w = lanczos_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  c.kk.resize(pre.size());
  for (std::size_t i = 0; i < pre.size(); ++i) {
    c.kk[i] = pre[i] < 0 ? static_cast<int32_t>(-0.5 + pre[i] * (1 << kPrecisionBits))
                         : static_cast<int32_t>(0.5 + pre[i] * (1 << kPrecisionBits));
  }
  return c;
}

inline std::uint8_t clip8(int64_t in) {
  if (in >= (int64_t{1} << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return static_cast<std::uint8_t>(in >> kPrecisionBits);
}

}  // namespace

at::Tensor image_from_bytes(const std::vector<std::uint8_t>& bytes) {
  if (bytes.empty()) throw Error(ErrorCode::kBadRequest, "image: no bytes");
  at::Tensor ppm = read_ppm(bytes);
  if (ppm.defined()) return ppm;
  Image img = decode_image(bytes);  // kConfig without libav, kBadRequest when undecodable
  at::Tensor t = at::empty({img.height, img.width, 3}, at::kByte);
  std::memcpy(t.data_ptr(), img.rgb.data(), img.rgb.size());
  return t;
}

at::Tensor unit_image(const at::Tensor& rgb) {
  if (rgb.dim() != 3 || rgb.size(2) != 3 || rgb.scalar_type() != at::kByte) {
    throw Error(ErrorCode::kBadRequest, "image: expected an RGB uint8 tensor [H, W, 3]");
  }
  at::Tensor x = rgb.permute({2, 0, 1}).contiguous().to(at::kFloat).div(255);
  return x.sub_(0.5).div_(0.5);
}

std::pair<int64_t, int64_t> i2v_latent_size(int64_t max_area, int64_t img_h, int64_t img_w, int64_t vae_stride,
                                            int64_t patch) {
  if (max_area <= 0 || img_h <= 0 || img_w <= 0) {
    throw Error(ErrorCode::kBadRequest, "i2v size: area and image size must be positive");
  }
  const double aspect = static_cast<double>(img_h) / static_cast<double>(img_w);
  auto lat = [&](double side) {
    const double a = std::floor(side / static_cast<double>(vae_stride));
    const double b = std::floor(a / static_cast<double>(patch));
    return static_cast<int64_t>(std::nearbyint(b * static_cast<double>(patch)));
  };
  const int64_t lat_h = lat(std::sqrt(static_cast<double>(max_area) * aspect));
  const int64_t lat_w = lat(std::sqrt(static_cast<double>(max_area) / aspect));
  if (lat_h <= 0 || lat_w <= 0) {
    throw Error(ErrorCode::kBadRequest, "i2v size: area " + std::to_string(max_area) + " too small for an image of " +
                                            std::to_string(img_w) + "x" + std::to_string(img_h));
  }
  return {lat_h, lat_w};
}

at::Tensor bicubic_resize(const at::Tensor& chw, int64_t h, int64_t w) {
  WAND_ASSERT(chw.dim() == 3, "bicubic_resize: expected [C, H, W]");
  at::Tensor x = chw.to(at::kCPU).to(at::kFloat).unsqueeze(0);
  return at::upsample_bicubic2d(x, {h, w}, /*align_corners=*/false)[0];
}

at::Tensor i2v_mask(int64_t frames, int64_t lat_h, int64_t lat_w) {
  if (frames < 1 || (frames - 1) % 4 != 0) {
    throw Error(ErrorCode::kBadRequest, "frames: " + std::to_string(frames) + " is not 4n + 1");
  }
  at::Tensor msk = at::ones({1, frames, lat_h, lat_w}, at::kFloat);
  msk.narrow(1, 1, frames - 1).zero_();
  msk = at::cat({at::repeat_interleave(msk.narrow(1, 0, 1), 4, 1), msk.narrow(1, 1, frames - 1)}, 1);
  msk = msk.view({1, msk.size(1) / 4, 4, lat_h, lat_w});
  return msk.transpose(1, 2)[0].contiguous();
}

std::pair<int64_t, int64_t> best_output_size(int64_t w, int64_t h, int64_t dw, int64_t dh, int64_t expected_area) {
  if (w <= 0 || h <= 0 || dw <= 0 || dh <= 0 || expected_area < dw * dh) {
    throw Error(ErrorCode::kBadRequest, "best_output_size: image " + std::to_string(w) + "x" + std::to_string(h) +
                                            " or area " + std::to_string(expected_area) + " out of range");
  }
  const double area = static_cast<double>(expected_area);
  const double ratio = static_cast<double>(w) / static_cast<double>(h);
  const double ow = std::pow(area * ratio, 0.5);
  const double oh = area / ow;
  auto floor_mult = [](double v, int64_t d) {
    return static_cast<int64_t>(std::floor(v / static_cast<double>(d)) * static_cast<double>(d));
  };
  const int64_t ow1 = floor_mult(ow, dw);
  const int64_t oh1 = ow1 > 0 ? floor_mult(area / static_cast<double>(ow1), dh) : 0;
  const int64_t oh2 = floor_mult(oh, dh);
  const int64_t ow2 = oh2 > 0 ? floor_mult(area / static_cast<double>(oh2), dw) : 0;
  if (ow1 <= 0 || oh1 <= 0) return {ow2, oh2};
  if (ow2 <= 0 || oh2 <= 0) return {ow1, oh1};
  const double r1 = static_cast<double>(ow1) / static_cast<double>(oh1);
  const double r2 = static_cast<double>(ow2) / static_cast<double>(oh2);
  if (std::max(ratio / r1, r1 / ratio) < std::max(ratio / r2, r2 / ratio)) return {ow1, oh1};
  return {ow2, oh2};
}

at::Tensor lanczos_resize(const at::Tensor& rgb_in, int64_t w, int64_t h) {
  if (rgb_in.dim() != 3 || rgb_in.size(2) != 3 || rgb_in.scalar_type() != at::kByte) {
    throw Error(ErrorCode::kBadRequest, "lanczos_resize: expected an RGB uint8 tensor [H, W, 3]");
  }
  if (w <= 0 || h <= 0) throw Error(ErrorCode::kBadRequest, "lanczos_resize: target size must be positive");
  at::Tensor rgb = rgb_in.contiguous();
  const int in_h = static_cast<int>(rgb.size(0)), in_w = static_cast<int>(rgb.size(1));
  const int out_w = static_cast<int>(w), out_h = static_cast<int>(h);
  const bool need_h = out_w != in_w;
  const bool need_v = out_h != in_h;
  Coeffs ch = precompute_coeffs(in_w, out_w);
  Coeffs cv = precompute_coeffs(in_h, out_h);
  const int ybox_first = cv.bounds[0];
  const int ybox_last = cv.bounds[out_h * 2 - 2] + cv.bounds[out_h * 2 - 1];

  // Horizontal pass over the rows the vertical pass reads.
  at::Tensor tmp;
  int tmp_rows_offset = 0;
  if (need_h) {
    const int rows = ybox_last - ybox_first;
    tmp = at::empty({rows, out_w, 3}, at::kByte);
    const std::uint8_t* src = rgb.data_ptr<std::uint8_t>();
    std::uint8_t* dst = tmp.data_ptr<std::uint8_t>();
    for (int yy = 0; yy < rows; ++yy) {
      const std::uint8_t* row = src + static_cast<std::size_t>(yy + ybox_first) * in_w * 3;
      for (int xx = 0; xx < out_w; ++xx) {
        const int xmin = ch.bounds[xx * 2], xmax = ch.bounds[xx * 2 + 1];
        const int32_t* k = &ch.kk[static_cast<std::size_t>(xx) * ch.ksize];
        int64_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < xmax; ++x) {
          const std::uint8_t* p = row + (x + xmin) * 3;
          s0 += static_cast<int64_t>(p[0]) * k[x];
          s1 += static_cast<int64_t>(p[1]) * k[x];
          s2 += static_cast<int64_t>(p[2]) * k[x];
        }
        std::uint8_t* o = dst + (static_cast<std::size_t>(yy) * out_w + xx) * 3;
        o[0] = clip8(s0);
        o[1] = clip8(s1);
        o[2] = clip8(s2);
      }
    }
    tmp_rows_offset = ybox_first;
  } else {
    tmp = rgb;
  }
  if (!need_v) return need_h ? tmp : rgb.clone();
  // Vertical pass.
  at::Tensor out = at::empty({out_h, out_w, 3}, at::kByte);
  const std::uint8_t* src = tmp.data_ptr<std::uint8_t>();
  std::uint8_t* dst = out.data_ptr<std::uint8_t>();
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = cv.bounds[yy * 2] - tmp_rows_offset, ymax = cv.bounds[yy * 2 + 1];
    const int32_t* k = &cv.kk[static_cast<std::size_t>(yy) * cv.ksize];
    for (int xx = 0; xx < out_w; ++xx) {
      int64_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int y = 0; y < ymax; ++y) {
        const std::uint8_t* p = src + (static_cast<std::size_t>(y + ymin) * out_w + xx) * 3;
        s0 += static_cast<int64_t>(p[0]) * k[y];
        s1 += static_cast<int64_t>(p[1]) * k[y];
        s2 += static_cast<int64_t>(p[2]) * k[y];
      }
      std::uint8_t* o = dst + (static_cast<std::size_t>(yy) * out_w + xx) * 3;
      o[0] = clip8(s0);
      o[1] = clip8(s1);
      o[2] = clip8(s2);
    }
  }
  return out;
}

at::Tensor ti2v_image(const at::Tensor& rgb, int64_t ow, int64_t oh) {
  if (rgb.dim() != 3 || rgb.size(2) != 3) throw Error(ErrorCode::kBadRequest, "ti2v image: expected [H, W, 3]");
  const int64_t ih = rgb.size(0), iw = rgb.size(1);
  const double scale = std::max(static_cast<double>(ow) / static_cast<double>(iw),
                                static_cast<double>(oh) / static_cast<double>(ih));
  const int64_t rw = round_half_even(static_cast<double>(iw) * scale);
  const int64_t rh = round_half_even(static_cast<double>(ih) * scale);
  at::Tensor resized = lanczos_resize(rgb, rw, rh);
  const int64_t x1 = (rw - ow) / 2, y1 = (rh - oh) / 2;
  if (x1 < 0 || y1 < 0 || rw < ow || rh < oh) {
    throw Error(ErrorCode::kInternal, "ti2v image: resized image smaller than the crop");
  }
  at::Tensor crop = resized.narrow(0, y1, oh).narrow(1, x1, ow);
  return unit_image(crop).unsqueeze(1);  // [3, 1, oh, ow]
}

at::Tensor ti2v_token_timesteps(int64_t grid_f, int64_t grid_h, int64_t grid_w, int64_t seq_len, int64_t t,
                                bool frame0_zero) {
  const int64_t n = grid_f * grid_h * grid_w;
  WAND_ASSERT(seq_len >= n, "ti2v_token_timesteps: seq_len below the token count");
  at::Tensor ts = at::full({1, seq_len}, static_cast<float>(t), at::kFloat);
  if (frame0_zero) ts.narrow(1, 0, grid_h * grid_w).zero_();
  return ts;
}

}  // namespace wand::model
