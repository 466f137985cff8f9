#include "model/formats/diffusers_vae_keys.h"

#include <utility>

namespace wand::model::formats {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Note [Diffusers VAE keys]: a residual block's tensors (suffix after the block prefix).
std::optional<std::string> residual_suffix(const std::string& rest) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"residual.0.gamma", "norm1.gamma"},           {"residual.2.weight", "conv1.weight"},
      {"residual.2.bias", "conv1.bias"},             {"residual.3.gamma", "norm2.gamma"},
      {"residual.6.weight", "conv2.weight"},         {"residual.6.bias", "conv2.bias"},
      {"shortcut.weight", "conv_shortcut.weight"},   {"shortcut.bias", "conv_shortcut.bias"},
  };
  for (const auto& [r, d] : kMap) {
    if (rest == r) return std::string(d);
  }
  return std::nullopt;
}

bool resample_suffix(const std::string& rest) {
  return starts_with(rest, "resample.") || starts_with(rest, "time_conv.");
}

// "<digits>.<rest>" -> (n, rest).
bool split_index(const std::string& s, int* n, std::string* rest) {
  std::size_t j = 0;
  while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
  if (j == 0 || j >= s.size() || s[j] != '.' || j > 6) return false;
  *n = std::stoi(s.substr(0, j));
  *rest = s.substr(j + 1);
  return true;
}

}  // namespace

std::optional<std::string> diffusers_vae_key(const std::string& k, bool wan22) {
  if (starts_with(k, "conv1.")) return "quant_conv." + k.substr(6);
  if (starts_with(k, "conv2.")) return "post_quant_conv." + k.substr(6);
  for (const std::string side : {"encoder", "decoder"}) {
    const std::string p = side + ".";
    if (!starts_with(k, p)) continue;
    const std::string r = k.substr(p.size());
    if (starts_with(r, "conv1.")) return p + "conv_in." + r.substr(6);
    if (r == "head.0.gamma") return p + "norm_out.gamma";
    if (starts_with(r, "head.2.")) return p + "conv_out." + r.substr(7);
    int n = 0;
    std::string rest;
    if (starts_with(r, "middle.") && split_index(r.substr(7), &n, &rest)) {
      if (n == 1) {
        for (const char* a : {"norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias"}) {
          if (rest == a) return p + "mid_block.attentions.0." + rest;
        }
        return std::nullopt;
      }
      if (n != 0 && n != 2) return std::nullopt;
      const auto s = residual_suffix(rest);
      if (!s) return std::nullopt;
      return p + "mid_block.resnets." + std::to_string(n / 2) + "." + *s;
    }
    const std::string list = side == "encoder" ? "downsamples." : "upsamples.";
    if (!starts_with(r, list) || !split_index(r.substr(list.size()), &n, &rest)) return std::nullopt;
    const std::string blocks = p + (side == "encoder" ? "down_blocks." : "up_blocks.");
    if (wan22) {  // <list>.X.<list>.Y.<rest>
      int y = 0;
      std::string tail;
      if (!starts_with(rest, list) || !split_index(rest.substr(list.size()), &y, &tail)) return std::nullopt;
      if (const auto s = residual_suffix(tail)) return blocks + std::to_string(n) + ".resnets." + std::to_string(y) + "." + *s;
      if (resample_suffix(tail)) {
        return blocks + std::to_string(n) + (side == "encoder" ? ".downsampler." : ".upsampler.") + tail;
      }
      return std::nullopt;
    }
    if (side == "encoder") {  // flat, same index
      if (const auto s = residual_suffix(rest)) return blocks + std::to_string(n) + "." + *s;
      if (resample_suffix(rest)) return blocks + std::to_string(n) + "." + rest;
      return std::nullopt;
    }
    const int b = n / 4, i = n % 4;  // each up block: 3 residual blocks + a resample
    if (i < 3) {
      const auto s = residual_suffix(rest);
      if (!s) return std::nullopt;
      return blocks + std::to_string(b) + ".resnets." + std::to_string(i) + "." + *s;
    }
    if (resample_suffix(rest)) return blocks + std::to_string(b) + ".upsamplers.0." + rest;
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace wand::model::formats
