#include "model/vae_config.h"

#include <set>
#include <sstream>

#include "common/error.h"
#include "common/log.h"
#include "model/tensor_source.h"

namespace wand::model {

namespace {

const std::vector<double> kMean21 = {-0.7571, -0.7089, -0.9113, 0.1075,  -0.1745, 0.9653,
                                     -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                     -0.1922, -0.9497, 0.2503,  -0.2921};
const std::vector<double> kStd21 = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                    2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                    1.6382, 1.1253, 2.8251, 1.9160};
const std::vector<double> kMean22 = {
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174,  0.1838,  0.1557,  -0.1382, 0.0542,
    0.2813,  0.0891,  0.1570,  -0.0098, 0.0375,  -0.1825, -0.2246, -0.1207, -0.0698, 0.5109,
    0.2665,  -0.2108, -0.2158, 0.2502,  -0.2055, -0.0322, 0.1109,  0.1567,  -0.0729, 0.0899,
    -0.2799, -0.1230, -0.0313, -0.1649, 0.0117,  0.0723,  -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152,  0.1957,  0.1433,  -0.2944, 0.3573,  -0.0548, -0.1681, -0.0667};
const std::vector<double> kStd22 = {
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344,
    0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804,
    0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999,
    0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744};

class SpecList {
 public:
  void conv3d(const std::string& p, int64_t cout, int64_t cin, int64_t kt, int64_t k) {
    add(p + ".weight", {cout, cin, kt, k, k});
    add(p + ".bias", {cout});
  }
  void conv2d(const std::string& p, int64_t cout, int64_t cin, int64_t k) {
    add(p + ".weight", {cout, cin, k, k});
    add(p + ".bias", {cout});
  }
  void res_block(const std::string& p, int64_t cin, int64_t cout) {
    add(p + ".residual.0.gamma", {cin, 1, 1, 1});
    conv3d(p + ".residual.2", cout, cin, 3, 3);
    add(p + ".residual.3.gamma", {cout, 1, 1, 1});
    conv3d(p + ".residual.6", cout, cout, 3, 3);
    if (cin != cout) conv3d(p + ".shortcut", cout, cin, 1, 1);
  }
  void attention(const std::string& p, int64_t c) {
    add(p + ".norm.gamma", {c, 1, 1});
    conv2d(p + ".to_qkv", 3 * c, c, 1);
    conv2d(p + ".proj", c, c, 1);
  }
  // mode: 0 downsample2d, 1 downsample3d, 2 upsample2d, 3 upsample3d.
  void resample(const std::string& p, int64_t c, int mode, bool halve_on_up) {
    const bool up = mode >= 2;
    const int64_t cout = up && halve_on_up ? c / 2 : c;
    conv2d(p + ".resample.1", cout, c, 3);
    if (mode == 1) conv3d(p + ".time_conv", c, c, 3, 1);
    if (mode == 3) conv3d(p + ".time_conv", 2 * c, c, 3, 1);
  }
  void add(std::string name, std::vector<int64_t> shape) {
    specs.push_back({std::move(name), std::move(shape)});
  }
  std::vector<VaeTensorSpec> specs;
};

void encoder_specs(const VaeConfig& cfg, SpecList& s) {
  const int64_t d = cfg.dim;
  const bool v22 = cfg.version == VaeVersion::kWan22;
  const int64_t dims[5] = {d, d * VaeConfig::kDimMult[0], d * VaeConfig::kDimMult[1],
                           d * VaeConfig::kDimMult[2], d * VaeConfig::kDimMult[3]};
  s.conv3d("encoder.conv1", dims[0], cfg.in_channels(), 3, 3);
  int idx = 0;
  for (int i = 0; i < 4; ++i) {
    int64_t cin = dims[i];
    const int64_t cout = dims[i + 1];
    const bool down = i != 3;
    const int mode = (i < 3 && VaeConfig::kTemporalDownsample[i]) ? 1 : 0;
    if (v22) {
      const std::string stage = "encoder.downsamples." + std::to_string(i) + ".downsamples.";
      for (int r = 0; r < VaeConfig::kNumResBlocks; ++r) {
        s.res_block(stage + std::to_string(r), cin, cout);
        cin = cout;
      }
      if (down) s.resample(stage + std::to_string(VaeConfig::kNumResBlocks), cout, mode, false);
    } else {
      for (int r = 0; r < VaeConfig::kNumResBlocks; ++r) {
        s.res_block("encoder.downsamples." + std::to_string(idx++), cin, cout);
        cin = cout;
      }
      if (down) s.resample("encoder.downsamples." + std::to_string(idx++), cout, mode, false);
    }
  }
  const int64_t c = dims[4];
  s.res_block("encoder.middle.0", c, c);
  s.attention("encoder.middle.1", c);
  s.res_block("encoder.middle.2", c, c);
  s.add("encoder.head.0.gamma", {c, 1, 1, 1});
  s.conv3d("encoder.head.2", 2 * cfg.z_dim, c, 3, 3);
}

void decoder_specs(const VaeConfig& cfg, SpecList& s) {
  const int64_t d = cfg.dec_dim;
  const bool v22 = cfg.version == VaeVersion::kWan22;
  const int64_t dims[5] = {d * 4, d * 4, d * 4, d * 2, d};
  // temperal_upsample = temperal_downsample reversed.
  const bool tup[3] = {VaeConfig::kTemporalDownsample[2], VaeConfig::kTemporalDownsample[1],
                       VaeConfig::kTemporalDownsample[0]};
  s.conv3d("decoder.conv1", dims[0], cfg.z_dim, 3, 3);
  s.res_block("decoder.middle.0", dims[0], dims[0]);
  s.attention("decoder.middle.1", dims[0]);
  s.res_block("decoder.middle.2", dims[0], dims[0]);
  int idx = 0;
  for (int i = 0; i < 4; ++i) {
    int64_t cin = dims[i];
    const int64_t cout = dims[i + 1];
    const bool up = i != 3;
    const int mode = (i < 3 && tup[i]) ? 3 : 2;
    if (v22) {
      const std::string stage = "decoder.upsamples." + std::to_string(i) + ".upsamples.";
      for (int r = 0; r < VaeConfig::kNumResBlocks + 1; ++r) {
        s.res_block(stage + std::to_string(r), cin, cout);
        cin = cout;
      }
      if (up) s.resample(stage + std::to_string(VaeConfig::kNumResBlocks + 1), cout, mode, false);
    } else {
      if (i >= 1) cin /= 2;  // the previous 2.1 upsample halved the width
      for (int r = 0; r < VaeConfig::kNumResBlocks + 1; ++r) {
        s.res_block("decoder.upsamples." + std::to_string(idx++), cin, cout);
        cin = cout;
      }
      if (up) s.resample("decoder.upsamples." + std::to_string(idx++), cout, mode, true);
    }
  }
  s.add("decoder.head.0.gamma", {d, 1, 1, 1});
  s.conv3d("decoder.head.2", cfg.in_channels(), d, 3, 3);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? "," : "") << s[i];
  o << "]";
  return o.str();
}

}  // namespace

constexpr int VaeConfig::kDimMult[4];
constexpr bool VaeConfig::kTemporalDownsample[3];

VaeConfig VaeConfig::wan21(int64_t dim) {
  VaeConfig c;
  c.version = VaeVersion::kWan21;
  c.dim = dim;
  c.dec_dim = dim;
  c.z_dim = 16;
  return c;
}

VaeConfig VaeConfig::wan22(int64_t dim, int64_t dec_dim) {
  VaeConfig c;
  c.version = VaeVersion::kWan22;
  c.dim = dim;
  c.dec_dim = dec_dim;
  c.z_dim = 48;
  return c;
}

std::string VaeConfig::name() const {
  std::ostringstream o;
  o << (version == VaeVersion::kWan21 ? "wan2.1-vae" : "wan2.2-vae") << " dim=" << dim;
  if (version == VaeVersion::kWan22) o << " dec_dim=" << dec_dim;
  o << " z=" << z_dim;
  return o.str();
}

const std::vector<double>& VaeConfig::latents_mean() const {
  return version == VaeVersion::kWan21 ? kMean21 : kMean22;
}
const std::vector<double>& VaeConfig::latents_std() const {
  return version == VaeVersion::kWan21 ? kStd21 : kStd22;
}

std::vector<VaeTensorSpec> vae_tensor_specs(const VaeConfig& cfg) {
  SpecList s;
  encoder_specs(cfg, s);
  s.conv3d("conv1", 2 * cfg.z_dim, 2 * cfg.z_dim, 1, 1);
  s.conv3d("conv2", cfg.z_dim, cfg.z_dim, 1, 1);
  decoder_specs(cfg, s);
  return s.specs;
}

int64_t vae_param_count(const VaeConfig& cfg) {
  int64_t n = 0;
  for (const auto& s : vae_tensor_specs(cfg)) {
    int64_t k = 1;
    for (int64_t d : s.shape) k *= d;
    n += k;
  }
  return n;
}

VaeConfig VaeConfig::from_checkpoint(const TensorSource& src) {
  const std::string where = src.describe();
  VaeConfig cfg;
  if (src.contains("encoder.downsamples.0.downsamples.0.residual.0.gamma")) {
    cfg.version = VaeVersion::kWan22;
  } else if (src.contains("encoder.downsamples.0.residual.0.gamma")) {
    cfg.version = VaeVersion::kWan21;
  } else {
    throw Error(ErrorCode::kModelFormat,
                where + ": not a Wan VAE state dict (no encoder.downsamples.0.* residual block)");
  }
  auto dim_of = [&](const std::string& key, size_t axis) -> int64_t {
    if (!src.contains(key)) throw Error(ErrorCode::kModelFormat, where + ": key " + key + " missing");
    const auto& shape = src.info(key).shape;
    if (shape.size() <= axis) {
      throw Error(ErrorCode::kModelFormat, where + ": key " + key + " has shape " + shape_str(shape));
    }
    return shape[axis];
  };
  cfg.dim = dim_of("encoder.conv1.weight", 0);
  cfg.dec_dim = dim_of("decoder.head.2.weight", 1);
  cfg.z_dim = dim_of("conv2.weight", 0);
  if (cfg.dim <= 0 || cfg.dec_dim <= 0 || cfg.z_dim <= 0 ||
      cfg.z_dim != static_cast<int64_t>(cfg.latents_mean().size())) {
    throw Error(ErrorCode::kModelFormat, where + ": z_dim " + std::to_string(cfg.z_dim) +
                                             " (conv2.weight) does not match the " +
                                             (cfg.version == VaeVersion::kWan21 ? "2.1 VAE (16)"
                                                                                : "2.2 VAE (48)"));
  }
  if (cfg.version == VaeVersion::kWan21 && cfg.dec_dim != cfg.dim) {
    throw Error(ErrorCode::kModelFormat, where + ": 2.1 VAE with encoder dim " +
                                             std::to_string(cfg.dim) + " but decoder dim " +
                                             std::to_string(cfg.dec_dim));
  }
  const auto specs = vae_tensor_specs(cfg);
  std::set<std::string> expected;
  for (const auto& s : specs) {
    expected.insert(s.name);
    if (!src.contains(s.name)) {
      throw Error(ErrorCode::kModelFormat, where + ": key " + s.name + " missing (" + cfg.name() + ")");
    }
    const auto& got = src.info(s.name).shape;
    if (got != s.shape) {
      throw Error(ErrorCode::kModelFormat, where + ": key " + s.name + " has shape " + shape_str(got) +
                                               ", expected " + shape_str(s.shape) + " (" +
                                               cfg.name() + ")");
    }
  }
  for (const auto& n : src.names()) {
    if (!expected.count(n)) {
      throw Error(ErrorCode::kModelFormat, where + ": unexpected key " + n + " for " + cfg.name());
    }
  }
  wand::log::get("model")->info("vae config={} tensors={} params={}", cfg.name(), specs.size(),
                                vae_param_count(cfg));
  return cfg;
}

}  // namespace wand::model
