#include "daemon/lora_catalog.h"

#include <algorithm>
#include <fstream>

#include "common/error.h"
#include "daemon/config.h"
#include "model/formats/diffusers_keys.h"
#include "model/formats/lora_keys.h"
#include "model/formats/model_layout.h"
#include "model/safetensors_header.h"

namespace wand::daemon {

namespace fs = std::filesystem;

namespace {

// The DiT config of a model directory (release or diffusers layout), from config.json only.
model::WanConfig dit_config(const fs::path& dir) {
  const model::formats::ModelLayout layout = model::formats::detect_model_layout(dir);
  const fs::path p = layout.experts.at(0).dir / "config.json";
  std::ifstream in(p);
  if (!in) throw Error(ErrorCode::kNotFound, "model: cannot open " + p.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::kModelFormat, p.string() + ": not valid JSON: " + e.what());
  }
  return model::formats::wan_config_from_any(j, p.string());
}

bool is_wan_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && !fs::exists(dir / "wand-fake-model.json", ec) &&
         model::formats::probe_model_layout(dir);
}

}  // namespace

std::map<std::string, std::string> lora_files_in_dir(const std::string& dir, const std::string& field) {
  std::error_code ec;
  if (dir.empty() || dir[0] != '/') throw Error(ErrorCode::kConfig, "field '" + field + "': '" + dir + "' is not an absolute path");
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::kConfig, "field '" + field + "': no directory " + dir);
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".safetensors") continue;
    const std::string name = e.path().stem().string();
    try {
      check_lora_ref(LoraRef{name}, "field '" + field + "': file " + e.path().string());
    } catch (const Error& err) {
      throw Error(ErrorCode::kConfig, err.what());
    }
    check_lora_file(e.path().string(), field);
    out[name] = e.path().string();
  }
  if (ec) throw Error(ErrorCode::kConfig, "field '" + field + "': cannot list " + dir + ": " + ec.message());
  return out;
}

void check_lora_file(const std::string& file, const std::string& field) {
  std::error_code ec;
  if (file.empty() || file[0] != '/') {
    throw Error(ErrorCode::kConfig, "field '" + field + "': '" + file + "' is not an absolute path");
  }
  if (!fs::is_regular_file(file, ec)) throw Error(ErrorCode::kConfig, "field '" + field + "': no file " + file);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorCode::kConfig, "field '" + field + "': cannot read " + file);
}

std::string served_loras_text(const std::map<std::string, std::string>& files) {
  if (files.empty()) return "the daemon serves no LoRA: its config has no \"loras\" section";
  std::string s = "served: ";
  bool first = true;
  for (const auto& [name, file] : files) {
    s += (first ? "" : ", ") + name;
    first = false;
  }
  return s + "; `wanctl models` lists them";
}

LoraCatalog::LoraCatalog(const DaemonConfig& cfg) : files_(cfg.loras), defaults_(cfg.model_loras) {}

void LoraCatalog::resolve(sched::JobSpec& spec, const fs::path& model_dir) const {
  static const std::vector<LoraRef> kNone;
  auto d = defaults_.find(spec.model);
  const std::vector<LoraRef> eff = effective_loras(d == defaults_.end() ? kNone : d->second, spec.loras);
  spec.loras = eff;
  spec.lora_files.clear();
  if (eff.empty()) return;
  for (std::size_t i = 0; i < eff.size(); ++i) {
    check_lora_ref(eff[i], "field 'loras[" + std::to_string(i) + "]'");
    auto f = files_.find(eff[i].name);
    if (f == files_.end()) {
      throw Error(ErrorCode::kBadRequest, "unknown LoRA '" + eff[i].name + "' (" + served_loras_text(files_) + ")");
    }
    spec.lora_files.push_back(f->second);
  }
  if (!is_wan_dir(model_dir)) return;  // a fake test model: nothing to check the keys against
  const model::WanConfig cfg = dit_config(model_dir);
  for (std::size_t i = 0; i < eff.size(); ++i) {
    try {
      model::formats::index_lora(model::read_safetensors_header(spec.lora_files[i]), cfg);
    } catch (const Error& e) {
      throw Error(ErrorCode::kBadRequest, "LoRA '" + eff[i].name + "' does not fit model '" + spec.model + "' (" +
                                              cfg.variant + "): " + e.what());
    }
  }
}

void LoraCatalog::describe(proto::ModelList& list, bool admin) const {
  for (proto::ModelInfo& m : list.models) {
    auto d = defaults_.find(m.name);
    if (d == defaults_.end()) continue;
    for (const LoraRef& r : d->second) m.default_loras.push_back(lora_ref_text(r));
  }
  for (const auto& [name, file] : files_) {
    proto::LoraInfo l;
    l.name = name;
    if (admin) l.file = file;
    try {
      const model::SafetensorsHeader h = model::read_safetensors_header(file);
      l.tensors = static_cast<std::int64_t>(h.entries.size());
      bool first = true;
      for (const model::SafetensorsEntry& e : h.entries) {
        l.bytes += e.bytes();
        const bool down = e.name.size() > 17 && (e.name.find(".lora_down.weight") != std::string::npos ||
                                                 e.name.find(".lora_A.weight") != std::string::npos);
        if (down && !e.shape.empty()) l.rank = std::max<std::int64_t>(l.rank, e.shape[0]);
        if (first) {
          l.layout = e.name.rfind("transformer.", 0) == 0 ? "diffusers"
                     : e.name.rfind("lora_unet_", 0) == 0 ? "kohya"
                                                            : "comfyui";
          first = false;
        }
      }
    } catch (const std::exception& e) {
      l.error = admin ? e.what() : "the file cannot be read (see the daemon's log)";
    }
    list.loras.push_back(std::move(l));
  }
}

void lora_warnings(const DaemonConfig& cfg, std::vector<std::string>& w) {
  for (const auto& [name, file] : cfg.loras) {
    try {
      model::read_safetensors_header(file);
    } catch (const std::exception& e) {
      w.push_back("loras." + name + ": " + e.what());
    }
  }
  for (const auto& [model, defaults] : cfg.model_loras) {
    auto dir = cfg.models.find(model);
    if (dir == cfg.models.end() || !is_wan_dir(dir->second)) continue;
    model::WanConfig mc;
    try {
      mc = dit_config(dir->second);
    } catch (const std::exception&) {
      continue;  // the registry's own check reports it (Note [Check config])
    }
    for (std::size_t i = 0; i < defaults.size(); ++i) {
      auto f = cfg.loras.find(defaults[i].name);
      if (f == cfg.loras.end()) continue;
      try {
        model::formats::index_lora(model::read_safetensors_header(f->second), mc);
      } catch (const std::exception& e) {
        w.push_back("models." + model + ".loras[" + std::to_string(i) + "]: LoRA '" + defaults[i].name +
                    "' does not fit the model (" + mc.variant + "): " + e.what());
      }
    }
  }
}

}  // namespace wand::daemon
