#include "model/formats/model_layout.h"

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"

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

}  // namespace

const char* layout_name(LayoutKind k) { return k == LayoutKind::kDiffusers ? "diffusers" : "release"; }

fs::path ModelLayout::t5_file() const { return dir / kT5Name; }
fs::path ModelLayout::tokenizer_dir() const { return dir / kTokenizerDir; }
fs::path ModelLayout::vae_file(const std::string& model_type) const {
  return dir / (model_type == "ti2v" ? kVae22Name : kVae21Name);
}

std::string ModelLayout::missing_part_hint(const std::string& part) const {
  if (kind != LayoutKind::kDiffusers) return "";
  // Note [Diffusers parts].
  if (part == "vae") {
    return " (a diffusers folder: wand does not read vae/ (AutoencoderKLWan, diffusers naming) yet; put the release " +
           std::string(kVae21Name) + " (A14B) or " + kVae22Name + " (TI2V-5B) into " + dir.string() +
           ", see docs/checkpoints.md)";
  }
  return " (a diffusers folder: wand does not read text_encoder/ (UMT5EncoderModel, transformers naming) and "
         "tokenizer/ yet; put the release " +
         std::string(kT5Name) + " and " + kTokenizerDir + "/ into " + dir.string() + ", see docs/checkpoints.md)";
}

bool probe_model_layout(const fs::path& dir) {
  if (present(dir / kModelIndexName)) return present(dir / kTransformer / "config.json");
  const bool a14b = present(dir / kHighDir / "config.json") && present(dir / kLowDir / "config.json") &&
                    present(dir / kVae21Name);
  const bool ti2v = present(dir / "config.json") && present(dir / kVae22Name);
  return a14b || ti2v;
}

ModelLayout detect_model_layout(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::kNotFound, "model: no directory " + dir.string());
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
