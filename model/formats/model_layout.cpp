#include "model/formats/model_layout.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/safetensors_header.h"

namespace wand::model::formats {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kHighDir = "high_noise_model";
constexpr const char* kLowDir = "low_noise_model";
constexpr const char* kTransformer = "transformer";
constexpr const char* kTransformer2 = "transformer_2";
constexpr const char* kT5Name = "models_t5_umt5-xxl-enc-bf16.pth";
constexpr const char* kTokenizerDir = "google/umt5-xxl";
constexpr const char* kVae21Name = "Wan2.1_VAE.pth";
constexpr const char* kVae22Name = "Wan2.2_VAE.pth";
constexpr const char* kTextEncoderDir = "text_encoder";
constexpr const char* kDiffusersTokenizerDir = "tokenizer";
constexpr const char* kVaeDir = "vae";

bool present(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

Json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw Error(ErrorCode::kModelFormat, p.string() + ": cannot open");
  try {
    return Json::parse(in);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModelFormat, p.string() + ": not valid JSON: " + e.what());
  }
}

// A model_index.json component entry: ["diffusers", "WanTransformer3DModel"], or [null, null]
// / null / absent for a component the pipeline does not have.
bool has_component(const Json& idx, const char* name) {
  if (!idx.contains(name)) return false;
  const Json& v = idx[name];
  return v.is_array() && !v.empty() && !v[0].is_null();
}

void need_expert_dir(const fs::path& d, const fs::path& index, const char* name) {
  if (!present(d / "config.json")) {
    throw Error(ErrorCode::kModelFormat, index.string() + " names " + name + " but " + (d / "config.json").string() +
                                             " is missing (an incomplete download?)");
  }
}

// Note [Model manifest].
ModelLayout detect_comfyui(const fs::path& dir) {
  ModelLayout l;
  l.kind = LayoutKind::kComfyUI;
  l.dir = dir;
  const fs::path mf = dir / kManifestName;
  const Json m = read_json(mf);
  if (!m.is_object()) throw Error(ErrorCode::kModelFormat, mf.string() + ": not a JSON object");
  auto str = [&](const char* key, bool required) -> std::string {
    if (!m.contains(key)) {
      if (required) throw Error(ErrorCode::kModelFormat, mf.string() + ": missing field '" + key + "'");
      return "";
    }
    if (!m[key].is_string() || m[key].get<std::string>().empty()) {
      throw Error(ErrorCode::kModelFormat, mf.string() + ": field '" + key + "' must be a non-empty string");
    }
    return m[key].get<std::string>();
  };
  auto file = [&](const char* key, bool want_dir = false) -> fs::path {
    const fs::path p = fs::path(str(key, true));
    const fs::path abs = p.is_absolute() ? p : dir / p;
    std::error_code ec;
    if (want_dir ? !fs::is_directory(abs, ec) : !fs::is_regular_file(abs, ec)) {
      throw Error(ErrorCode::kModelFormat, mf.string() + ": '" + key + "' names " + abs.string() + ", which is not " +
                                               (want_dir ? "a directory" : "a file") + " (not downloaded?)");
    }
    return abs;
  };
  const std::string format = str("format", true);
  if (format != "comfyui") {
    throw Error(ErrorCode::kModelFormat, mf.string() + ": format \"" + format + "\" is not \"comfyui\"");
  }
  l.model_type = str("model_type", true);
  if (l.model_type != "t2v" && l.model_type != "i2v" && l.model_type != "ti2v") {
    throw Error(ErrorCode::kModelFormat, mf.string() + ": model_type \"" + l.model_type + "\" is not t2v, i2v or ti2v");
  }
  if (l.model_type == "ti2v") {
    if (m.contains("high_noise") || m.contains("low_noise")) {
      throw Error(ErrorCode::kModelFormat, mf.string() + ": a ti2v model has one 'dit', not high_noise / low_noise");
    }
    l.experts.push_back({"dit", file("dit")});
  } else {
    if (m.contains("dit")) {
      throw Error(ErrorCode::kModelFormat, mf.string() + ": an A14B model (" + l.model_type +
                                               ") has 'high_noise' and 'low_noise', not 'dit'");
    }
    l.experts.push_back({"high_noise", file("high_noise")});
    l.experts.push_back({"low_noise", file("low_noise")});
  }
  l.manifest_t5 = file("text_encoder");
  l.manifest_vae = file("vae");
  l.manifest_tokenizer = file("tokenizer", /*want_dir=*/true);
  if (!present(l.manifest_tokenizer / "spiece.model")) {
    throw Error(ErrorCode::kModelFormat, mf.string() + ": 'tokenizer' names " + l.manifest_tokenizer.string() +
                                             ", which has no spiece.model");
  }
  if (m.contains("boundary")) {
    const Json& b = m["boundary"];
    if (!b.is_number() || !(b.get<double>() > 0.0 && b.get<double>() < 1.0)) {
      throw Error(ErrorCode::kModelFormat, mf.string() + ": boundary " + b.dump() + " is not a number in (0, 1)");
    }
    if (l.model_type == "ti2v") throw Error(ErrorCode::kModelFormat, mf.string() + ": a ti2v model has no boundary");
    l.boundary_ratio = b.get<double>();
  }
  return l;
}

// The key naming of a single umT5 / VAE file, from its keys (Note [Model manifest]).
PartNaming naming_of(const fs::path& f, const char* release_key, const char* other_key, PartNaming other,
                     const fs::path& manifest, const char* field) {
  if (f.extension() != ".safetensors") return PartNaming::kRelease;  // a release .pth
  const SafetensorsHeader h = read_safetensors_header(f.string());
  bool rel = false, oth = false;
  for (const SafetensorsEntry& e : h.entries) {
    rel = rel || e.name == release_key;
    oth = oth || e.name == other_key;
  }
  if (rel) return PartNaming::kRelease;
  if (oth) return other;
  throw Error(ErrorCode::kModelFormat, f.string() + " (" + manifest.string() + " '" + field + "'): neither key '" +
                                           release_key + "' nor '" + other_key + "'");
}

ModelLayout detect_diffusers(const fs::path& dir) {
  ModelLayout l;
  l.kind = LayoutKind::kDiffusers;
  l.dir = dir;
  const fs::path index = dir / kModelIndexName;
  const Json idx = read_json(index);
  if (!idx.is_object()) throw Error(ErrorCode::kModelFormat, index.string() + ": not a JSON object");
  const std::string cls = idx.contains("_class_name") && idx["_class_name"].is_string()
                              ? idx["_class_name"].get<std::string>()
                              : std::string();
  if (cls != "WanPipeline" && cls != "WanImageToVideoPipeline") {
    throw Error(ErrorCode::kModelFormat, index.string() + ": _class_name is " +
                                             (cls.empty() ? std::string("missing") : "\"" + cls + "\"") +
                                             ", not a Wan2.2 pipeline (WanPipeline or WanImageToVideoPipeline)");
  }
  if (!has_component(idx, kTransformer)) {
    throw Error(ErrorCode::kModelFormat, index.string() + ": no 'transformer' component (a Wan pipeline needs its DiT)");
  }
  need_expert_dir(dir / kTransformer, index, kTransformer);
  l.experts.push_back({kTransformer, dir / kTransformer});
  if (has_component(idx, kTransformer2)) {
    need_expert_dir(dir / kTransformer2, index, kTransformer2);
    l.experts.push_back({kTransformer2, dir / kTransformer2});
  }
  if (idx.contains("boundary_ratio") && !idx["boundary_ratio"].is_null()) {
    const Json& b = idx["boundary_ratio"];
    if (!b.is_number() || !(b.get<double>() > 0.0 && b.get<double>() < 1.0)) {
      throw Error(ErrorCode::kModelFormat, index.string() + ": boundary_ratio " + b.dump() + " is not a number in (0, 1)");
    }
    l.boundary_ratio = b.get<double>();
  }
  if (l.two_experts() && !l.boundary_ratio) {
    throw Error(ErrorCode::kModelFormat, index.string() + ": two transformers but no boundary_ratio (which expert runs when?)");
  }
  return l;
}

// The *.safetensors files of a folder, sorted (empty when none or no folder).
std::vector<fs::path> safetensors_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

const char* part_naming_name(PartNaming n) {
  switch (n) {
    case PartNaming::kTransformers: return "transformers";
    case PartNaming::kDiffusers: return "diffusers";
    default: return "release";
  }
}

std::uint64_t PartFiles::bytes() const {
  std::uint64_t n = 0;
  for (const fs::path& f : files) {
    std::error_code ec;
    const std::uintmax_t s = fs::file_size(f, ec);
    if (ec) throw Error(ErrorCode::kModelFormat, f.string() + ": " + part + " file missing (" + ec.message() + ")");
    n += static_cast<std::uint64_t>(s);
  }
  return n;
}

PartFiles ModelLayout::text_encoder() const {
  PartFiles p;
  p.part = "text encoder";
  if (kind == LayoutKind::kComfyUI) {
    p.naming = naming_of(manifest_t5, "blocks.0.attn.q.weight", "encoder.block.0.layer.0.SelfAttention.q.weight", PartNaming::kTransformers,
                         dir / kManifestName, "text_encoder");
    p.files = {manifest_t5};
    p.where = manifest_t5;
    return p;
  }
  if (kind == LayoutKind::kDiffusers) {  // Note [Diffusers parts]: text_encoder/ first
    std::vector<fs::path> shards = safetensors_in(dir / kTextEncoderDir);
    if (!shards.empty()) {
      p.naming = PartNaming::kTransformers;
      p.files = std::move(shards);
      p.where = dir / kTextEncoderDir;
      return p;
    }
  }
  p.where = dir / kT5Name;
  if (!present(p.where)) {
    throw Error(ErrorCode::kModelFormat,
                "model " + dir.string() + ": missing " + p.where.string() + missing_part_hint("text encoder"));
  }
  p.files = {p.where};
  return p;
}

PartFiles ModelLayout::vae(const std::string& model_type) const {
  PartFiles p;
  p.part = "vae";
  if (kind == LayoutKind::kComfyUI) {
    p.naming = naming_of(manifest_vae, "encoder.conv1.weight", "encoder.conv_in.weight", PartNaming::kDiffusers,
                         dir / kManifestName, "vae");
    p.files = {manifest_vae};
    p.where = manifest_vae;
    return p;
  }
  if (kind == LayoutKind::kDiffusers) {
    std::vector<fs::path> files = safetensors_in(dir / kVaeDir);
    if (!files.empty()) {
      p.naming = PartNaming::kDiffusers;
      p.files = std::move(files);
      p.where = dir / kVaeDir;
      return p;
    }
  }
  p.where = vae_file(model_type);
  if (!present(p.where)) {
    throw Error(ErrorCode::kModelFormat,
                "model " + dir.string() + ": missing " + p.where.string() + missing_part_hint("vae"));
  }
  p.files = {p.where};
  return p;
}

const char* layout_name(LayoutKind k) {
  switch (k) {
    case LayoutKind::kDiffusers: return "diffusers";
    case LayoutKind::kComfyUI: return "comfyui";
    default: return "release";
  }
}

bool ExpertLocation::single_file() const {
  std::error_code ec;
  return fs::is_regular_file(dir, ec);
}

fs::path ModelLayout::t5_file() const { return dir / kT5Name; }
fs::path ModelLayout::tokenizer_dir() const {
  if (kind == LayoutKind::kComfyUI) return manifest_tokenizer;
  if (kind == LayoutKind::kDiffusers) {
    if (present(dir / kDiffusersTokenizerDir / "spiece.model")) return dir / kDiffusersTokenizerDir;
    if (!present(dir / kTokenizerDir / "spiece.model")) {
      throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": missing " +
                                               (dir / kDiffusersTokenizerDir / "spiece.model").string() +
                                               missing_part_hint("tokenizer"));
    }
  }
  return dir / kTokenizerDir;
}
fs::path ModelLayout::vae_file(const std::string& model_type) const {
  return dir / (model_type == "ti2v" ? kVae22Name : kVae21Name);
}

std::string ModelLayout::missing_part_hint(const std::string& part) const {
  if (kind != LayoutKind::kDiffusers) return "";
  // Note [Diffusers parts].
  if (part == "vae") {
    return " (a diffusers folder: neither " + (dir / kVaeDir).string() +
           "/ with AutoencoderKLWan safetensors nor the release " + kVae21Name + " (A14B) / " + kVae22Name +
           " (TI2V-5B) is there; see docs/checkpoints.md)";
  }
  if (part == "tokenizer") {
    return " (a diffusers folder: neither " + (dir / kDiffusersTokenizerDir).string() + "/spiece.model nor the release " +
           kTokenizerDir + "/spiece.model is there; tokenizer.json alone is not read; see docs/checkpoints.md)";
  }
  return " (a diffusers folder: neither " + (dir / kTextEncoderDir).string() +
         "/ with UMT5EncoderModel safetensors nor the release " + kT5Name + " is there; see docs/checkpoints.md)";
}

bool probe_model_layout(const fs::path& dir) {
  if (present(dir / kManifestName)) return true;  // checked at load, naming the manifest
  if (present(dir / kModelIndexName)) return present(dir / kTransformer / "config.json");
  const bool a14b = present(dir / kHighDir / "config.json") && present(dir / kLowDir / "config.json") &&
                    present(dir / kVae21Name);
  const bool ti2v = present(dir / "config.json") && present(dir / kVae22Name);
  return a14b || ti2v;
}

ModelLayout detect_model_layout(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::kNotFound, "model: no directory " + dir.string());
  if (present(dir / kManifestName)) return detect_comfyui(dir);
  if (present(dir / kModelIndexName)) return detect_diffusers(dir);
  ModelLayout l;
  l.kind = LayoutKind::kRelease;
  l.dir = dir;
  const bool two = present(dir / kHighDir / "config.json") || present(dir / kLowDir / "config.json");
  if (two) {
    for (const char* sub : {kHighDir, kLowDir}) {
      if (!present(dir / sub / "config.json")) {
        throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": missing " + sub + "/config.json");
      }
      l.experts.push_back({sub, dir / sub});
    }
  } else {
    if (!present(dir / "config.json")) {
      if (present(dir / kTransformer / "config.json")) {
        throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": transformer/ without " + kModelIndexName +
                                                 " (a diffusers folder needs its model_index.json)");
      }
      throw Error(ErrorCode::kModelFormat, "model " + dir.string() + ": no config.json, no " + kHighDir + "/ and " +
                                               kLowDir + "/, no " + kModelIndexName +
                                               " (not a Wan2.2 model directory in the release or diffusers layout)");
    }
    l.experts.push_back({"", dir});
  }
  return l;
}

}  // namespace wand::model::formats
