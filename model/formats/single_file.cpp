#include "model/formats/single_file.h"

#include <map>

#include "common/error.h"

namespace wand::model::formats {

namespace fs = std::filesystem;

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

void refuse_unread_weights(const SafetensorsHeader& h) {
  for (const SafetensorsEntry& e : h.entries) {
    if (e.dtype.rfind("F8", 0) == 0 || ends_with(e.name, "scale_weight") || ends_with(e.name, "scale_input")) {
      throw Error(ErrorCode::kModelFormat,
                  h.path + ": key '" + e.name + "' is " + (e.dtype.rfind("F8", 0) == 0 ? e.dtype : "an fp8 scale") +
                      ": fp8 weights are read from the release and diffusers layouts, not yet from ComfyUI single files; use the fp16 or bf16 file, or configure the model with \"weights_dtype\": \"fp8\" to keep its blocks in fp8");
    }
  }
}

SingleFileExpert read_single_file_expert(const fs::path& file, const std::string& model_type) {
  const SafetensorsHeader h = read_safetensors_header(file.string());
  refuse_unread_weights(h);
  std::map<std::string, const SafetensorsEntry*> by_name;
  for (const SafetensorsEntry& e : h.entries) by_name[e.name] = &e;
  SingleFileExpert out;
  bool found = false;
  for (const char* p : {"", "model.diffusion_model.", "diffusion_model."}) {
    if (by_name.count(std::string(p) + "patch_embedding.weight")) {
      out.prefix = p;
      found = true;
      break;
    }
  }
  if (!found) {
    throw Error(ErrorCode::kModelFormat, file.string() + ": no key 'patch_embedding.weight' (bare, or under "
                                                         "'model.diffusion_model.' / 'diffusion_model.'): not a Wan2.2 "
                                                         "DiT in the release naming");
  }
  if (!model_type.empty() && model_type != "t2v" && model_type != "i2v" && model_type != "ti2v") {
    throw Error(ErrorCode::kModelFormat, file.string() + ": model type '" + model_type + "' is not t2v, i2v or ti2v");
  }
  // Note [Single-file config]: the model type's presets, the one whose key set and shapes match.
  std::vector<std::string> presets;
  for (const std::string t : {"t2v", "i2v", "ti2v"}) {
    if (!model_type.empty() && t != model_type) continue;
    presets.push_back(t == "ti2v" ? "ti2v-5B" : t + "-A14B");
    presets.push_back("tiny-" + t);
  }
  // The refusal names the miss of the preset the file matched furthest (its own family).
  std::string best_miss;
  std::size_t best_matched = 0;
  for (const std::string& preset : presets) {
    const SafetensorsEntry* te = by_name.count(out.prefix + "text_embedding.0.weight")
                                     ? by_name.at(out.prefix + "text_embedding.0.weight")
                                     : nullptr;
    const int64_t text_dim = te && te->shape.size() == 2 ? te->shape[1] : 0;
    WanConfig c = WanConfig::from_preset(preset, preset.rfind("tiny", 0) == 0 ? text_dim : 0);
    std::string miss;
    std::size_t matched = 0;
    const auto expected = c.expected_tensors();
    for (const auto& [name, shape] : expected) {
      auto it = by_name.find(out.prefix + name);
      if (it == by_name.end()) {
        miss = "missing key '" + out.prefix + name + "' (" + preset + ")";
        break;
      }
      if (it->second->shape != shape) {
        miss = "key '" + out.prefix + name + "' has shape " + shape_str(it->second->shape) + ", " + preset + " has " +
               shape_str(shape);
        break;
      }
      ++matched;
    }
    if (miss.empty() && expected.size() != h.entries.size()) {
      for (const SafetensorsEntry& e : h.entries) {
        bool known = false;
        if (e.name.rfind(out.prefix, 0) == 0) {
          const std::string n = e.name.substr(out.prefix.size());
          for (const auto& x : expected) known = known || x.first == n;
        }
        if (!known) {
          miss = "unexpected key '" + e.name + "' for " + preset;
          break;
        }
      }
    }
    if (miss.empty()) {
      out.config = c;
      return out;
    }
    if (best_miss.empty() || matched > best_matched) {
      best_miss = miss;
      best_matched = matched;
    }
  }
  throw Error(ErrorCode::kModelFormat, file.string() + ": not a Wan2.2 " + (model_type.empty() ? "" : model_type + " ") +
                                           "DiT: " + best_miss);
}

}  // namespace wand::model::formats
