#include "model/formats/lora_keys.h"

#include <algorithm>
#include <map>

#include "common/error.h"
#include "model/formats/diffusers_keys.h"

namespace wand::model::formats {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
bool starts_with(const std::string& s, const std::string& pre) { return s.rfind(pre, 0) == 0; }

const std::string* find_sorted(const std::vector<std::pair<std::string, std::string>>& v, const std::string& k) {
  auto it = std::lower_bound(v.begin(), v.end(), k, [](const auto& p, const std::string& x) { return p.first < x; });
  return it != v.end() && it->first == k ? &it->second : nullptr;
}

// Note [LoRA key layouts]: the suffixes, longest first.
const std::pair<const char*, LoraPart> kSuffixes[] = {
    {".lora_down.weight", LoraPart::kDown}, {".lora_A.weight", LoraPart::kDown},
    {".lora_up.weight", LoraPart::kUp},     {".lora_B.weight", LoraPart::kUp},
    {".lora_B.bias", LoraPart::kDiffBias},  {".diff_b", LoraPart::kDiffBias},
    {".diff", LoraPart::kDiff},             {".alpha", LoraPart::kAlpha},
};

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

}  // namespace

const char* lora_layout_name(LoraLayout l) {
  switch (l) {
    case LoraLayout::kDiffusers: return "diffusers";
    case LoraLayout::kComfy: return "comfyui";
    case LoraLayout::kKohya: return "kohya";
  }
  return "?";
}

LoraKeyMap::LoraKeyMap(const WanConfig& cfg) : tensors_(cfg.expected_tensors()) {
  std::map<std::string, std::string> modules;  // release module -> weight key
  for (const auto& [key, shape] : tensors_) {
    if (ends_with(key, ".weight")) {
      modules[key.substr(0, key.size() - 7)] = key;
    } else if (ends_with(key, ".bias")) {
      modules.emplace(key.substr(0, key.size() - 5), "");  // a weight of the same module wins
    } else {
      modules[key] = key;  // a parameter (modulation)
    }
  }
  for (const auto& [m, w] : modules) {
    modules_.emplace_back(m, w);
    // The diffusers spelling of a module is that of its weight (or bias, or parameter) key.
    const std::string any_key = !w.empty() ? w : m + ".bias";
    const std::string d = diffusers_dit_key(any_key);
    const std::string dm = w == m ? d : d.substr(0, d.rfind('.'));
    diffusers_.emplace_back(dm, m);
    std::string k = m;
    std::replace(k.begin(), k.end(), '.', '_');
    kohya_.emplace_back(k, m);
  }
  auto by_first = [](const auto& a, const auto& b) { return a.first < b.first; };
  std::sort(diffusers_.begin(), diffusers_.end(), by_first);
  std::sort(kohya_.begin(), kohya_.end(), by_first);
  std::sort(tensors_.begin(), tensors_.end(), by_first);
}

std::optional<LoraKeyInfo> LoraKeyMap::classify(const std::string& file_key) const {
  LoraKeyInfo info;
  std::string rest;
  bool found = false;
  for (const auto& [suf, part] : kSuffixes) {
    if (ends_with(file_key, suf)) {
      rest = file_key.substr(0, file_key.size() - std::string(suf).size());
      info.part = part;
      found = true;
      break;
    }
  }
  if (!found) return std::nullopt;
  auto release = [&](const std::string& m) { return find_sorted(modules_, m) != nullptr; };
  if (starts_with(rest, "transformer.")) {
    info.layout = LoraLayout::kDiffusers;
    rest = rest.substr(12);
    const std::string* m = find_sorted(diffusers_, rest);
    info.module = m ? *m : rest;
    info.known = m != nullptr;
  } else if (starts_with(rest, "diffusion_model.")) {
    info.layout = LoraLayout::kComfy;
    info.module = rest.substr(16);
    info.known = release(info.module);
  } else if (starts_with(rest, "lora_unet_")) {
    info.layout = LoraLayout::kKohya;
    rest = rest.substr(10);
    const std::string* m = find_sorted(kohya_, rest);
    info.module = m ? *m : rest;
    info.known = m != nullptr;
  } else if (release(rest)) {  // no prefix: release names first
    info.layout = LoraLayout::kComfy;
    info.module = rest;
    info.known = true;
  } else if (const std::string* m = find_sorted(diffusers_, rest)) {
    info.layout = LoraLayout::kDiffusers;
    info.module = *m;
    info.known = true;
  } else {
    info.layout = LoraLayout::kComfy;
    info.module = rest;
    info.known = false;
  }
  return info;
}

std::string LoraKeyMap::weight_key(const std::string& module) const {
  const std::string* w = find_sorted(modules_, module);
  return w ? *w : std::string();
}

std::string LoraKeyMap::bias_key(const std::string& module) const {
  const std::string b = module + ".bias";
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), b,
                             [](const auto& p, const std::string& x) { return p.first < x; });
  return it != tensors_.end() && it->first == b ? b : std::string();
}

const std::vector<int64_t>& LoraKeyMap::shape(const std::string& release_key) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), release_key,
                             [](const auto& p, const std::string& x) { return p.first < x; });
  WAND_ASSERT(it != tensors_.end() && it->first == release_key, "lora key map: no release key " + release_key);
  return it->second;
}

LoraIndex index_lora(const model::SafetensorsHeader& h, const WanConfig& cfg) {
  const LoraKeyMap map(cfg);
  LoraIndex ix;
  ix.path = h.path;
  const std::string who = "LoRA " + h.path;
  auto bad = [&](const std::string& key, const std::string& why) {
    throw Error(ErrorCode::kModelFormat, who + ": key '" + key + "': " + why);
  };
  std::map<std::string, LoraModule> mods;
  std::map<std::string, std::vector<int64_t>> shapes;
  bool first = true;
  for (const SafetensorsEntry& e : h.entries) {
    const std::optional<LoraKeyInfo> k = map.classify(e.name);
    if (!k) {
      bad(e.name, "not a LoRA key of a known layout (expected <module>.lora_down.weight / lora_up.weight / alpha / "
                  "diff / diff_b, or lora_A / lora_B, with the prefix transformer., diffusion_model. or lora_unet_)");
    }
    if (!k->known) {
      bad(e.name, "names module '" + k->module + "' that the " + cfg.variant + " DiT (" +
                      std::to_string(cfg.num_layers) + " blocks, dim " + std::to_string(cfg.dim) +
                      ") does not have: a LoRA for another model?");
    }
    if (first) ix.layout = k->layout;
    first = false;
    shapes[e.name] = e.shape;
    ix.tensor_bytes += e.bytes();
    LoraModule& m = mods[k->module];
    m.module = k->module;
    std::string* slot = nullptr;
    switch (k->part) {
      case LoraPart::kDown: slot = &m.down_key; break;
      case LoraPart::kUp: slot = &m.up_key; break;
      case LoraPart::kAlpha: slot = &m.alpha_key; break;
      case LoraPart::kDiff: slot = &m.diff_key; break;
      case LoraPart::kDiffBias: slot = &m.diff_b_key; break;
    }
    if (!slot->empty()) bad(e.name, "module '" + k->module + "' already has this part from key '" + *slot + "'");
    *slot = e.name;
  }
  if (mods.empty()) {
    throw Error(ErrorCode::kModelFormat, who + ": no key matches the " + cfg.variant + " DiT (the file has no tensors)");
  }
  for (auto& [name, m] : mods) {
    if (starts_with(name, "blocks.")) {
      m.block = std::stoll(name.substr(7, name.find('.', 7) - 7));
    } else {
      const std::string& any = !m.down_key.empty() ? m.down_key
                               : !m.diff_key.empty() ? m.diff_key
                               : !m.diff_b_key.empty() ? m.diff_b_key : m.alpha_key;
      bad(any, "changes '" + name + "', outside the DiT blocks: wand applies LoRAs to the blocks only (patch, "
               "text, time and head deltas are not supported yet)");
    }
    const bool has_low_rank = !m.down_key.empty() || !m.up_key.empty();
    if (has_low_rank || !m.diff_key.empty()) {
      m.weight_key = map.weight_key(name);
      if (m.weight_key.empty()) {
        bad(has_low_rank ? (m.down_key.empty() ? m.up_key : m.down_key) : m.diff_key,
            "module '" + name + "' has no weight to change");
      }
    }
    if (has_low_rank) {
      if (m.down_key.empty()) bad(m.up_key, "an up matrix without its down matrix");
      if (m.up_key.empty()) bad(m.down_key, "a down matrix without its up matrix");
      const std::vector<int64_t>& w = map.shape(m.weight_key);
      const std::vector<int64_t>& d = shapes[m.down_key];
      const std::vector<int64_t>& u = shapes[m.up_key];
      if (w.size() != 2) bad(m.down_key, "a low-rank delta for '" + m.weight_key + "' of shape " + shape_text(w) +
                                             " (low-rank deltas change 2-D weights only)");
      if (d.size() != 2 || u.size() != 2 || d[1] != w[1] || u[0] != w[0] || d[0] != u[1] || d[0] <= 0) {
        bad(m.down_key, "shapes down " + shape_text(d) + " / up " + shape_text(u) + " do not fit '" + m.weight_key +
                            "' " + shape_text(w) + " (expected down [r, " + std::to_string(w[1]) + "], up [" +
                            std::to_string(w[0]) + ", r])");
      }
      if (d[0] > std::min(w[0], w[1])) {
        bad(m.down_key, "rank " + std::to_string(d[0]) + " is above the sides of '" + m.weight_key + "' " +
                            shape_text(w));
      }
      m.rank = d[0];
      ix.max_rank = std::max(ix.max_rank, m.rank);
    }
    if (!m.alpha_key.empty()) {
      if (!has_low_rank) bad(m.alpha_key, "an alpha without a down / up pair");
      if (numel(shapes[m.alpha_key]) != 1) bad(m.alpha_key, "alpha of shape " + shape_text(shapes[m.alpha_key]) + ", expected one number");
    }
    if (!m.diff_key.empty() && shapes[m.diff_key] != map.shape(m.weight_key)) {
      bad(m.diff_key, "diff of shape " + shape_text(shapes[m.diff_key]) + " for '" + m.weight_key + "' " +
                          shape_text(map.shape(m.weight_key)));
    }
    if (!m.diff_b_key.empty()) {
      m.bias_key = map.bias_key(name);
      if (m.bias_key.empty()) bad(m.diff_b_key, "module '" + name + "' has no bias");
      if (shapes[m.diff_b_key] != map.shape(m.bias_key)) {
        bad(m.diff_b_key, "diff_b of shape " + shape_text(shapes[m.diff_b_key]) + " for '" + m.bias_key + "' " +
                              shape_text(map.shape(m.bias_key)));
      }
    }
    ix.modules.push_back(m);
  }
  return ix;
}

}  // namespace wand::model::formats
