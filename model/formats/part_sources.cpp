#include "model/formats/part_sources.h"

#include <map>

#include "common/error.h"
#include "model/formats/diffusers_vae_keys.h"
#include "model/formats/renamed_source.h"
#include "model/formats/transformers_umt5_keys.h"
#include "model/pth.h"
#include "model/safetensors.h"
#include "model/vae_config.h"

namespace wand::model {

namespace {

std::vector<std::string> strings(const std::vector<std::filesystem::path>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.string());
  return out;
}

bool file_has_key(const std::vector<std::string>& files, const std::string& key) {
  for (const std::string& f : files) {
    if (SafetensorsFile(f).contains(key)) return true;
  }
  return false;
}

// Note [Diffusers VAE keys]: the table file key -> release key, over the release key list of
// the VAE version the files hold (Wan2.2 nests its blocks: down_blocks.0.resnets.0 exists).
std::unique_ptr<TensorSource> open_diffusers_vae(const formats::PartFiles& part) {
  const std::vector<std::string> files = strings(part.files);
  const bool wan22 = file_has_key(files, "encoder.down_blocks.0.resnets.0.norm1.gamma");
  const VaeConfig ref = wan22 ? VaeConfig::wan22() : VaeConfig::wan21();
  auto to_release = std::make_shared<std::map<std::string, std::string>>();
  std::map<std::string, std::string> to_file;
  for (const VaeTensorSpec& s : vae_tensor_specs(ref)) {
    const std::optional<std::string> d = formats::diffusers_vae_key(s.name, wan22);
    WAND_ASSERT(d.has_value(), "diffusers VAE key map misses " + s.name);
    (*to_release)[*d] = s.name;
    to_file[s.name] = *d;
  }
  const std::string what = "vae " + part.where.string() + " (AutoencoderKLWan, diffusers naming, " +
                           (wan22 ? "Wan2.2" : "Wan2.1") + " VAE)";
  auto src = std::make_unique<RenamedSource>(
      files,
      [to_release](const std::string& k) -> std::optional<std::string> {
        auto it = to_release->find(k);
        if (it == to_release->end()) return std::nullopt;
        return it->second;
      },
      what);
  for (const auto& [release, file_key] : to_file) {
    if (!src->contains(release)) {
      throw Error(ErrorCode::kModelFormat, part.where.string() + ": missing key '" + file_key + "' (" +
                                               (wan22 ? "Wan2.2" : "Wan2.1") + " VAE, release name '" + release +
                                               "')");
    }
  }
  try {
    VaeConfig::from_checkpoint(*src);  // shapes (the widths are the file's own)
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& [release, file_key] : to_file) {
      if (msg.find("key " + release + " ") != std::string::npos) {
        msg += "; stored as '" + file_key + "' in " + src->info(release).path;
        break;
      }
    }
    throw Error(ErrorCode::kModelFormat, msg);
  }
  return src;
}

}  // namespace

std::unique_ptr<TensorSource> open_part(const formats::PartFiles& part) {
  if (part.files.empty()) throw Error(ErrorCode::kModelFormat, part.part + ": no files at " + part.where.string());
  switch (part.naming) {
    case formats::PartNaming::kTransformers:
      // ComfyUI's umT5 files may carry the tokenizer as a "spiece_model" byte tensor: not a weight.
      return std::make_unique<RenamedSource>(strings(part.files), formats::wand_umt5_key,
                                             "umT5 " + part.where.string() + " (UMT5EncoderModel, transformers naming)",
                                             std::vector<std::string>{"spiece_model"});
    case formats::PartNaming::kDiffusers:
      return open_diffusers_vae(part);
    case formats::PartNaming::kRelease:
      break;
  }
  if (part.files.size() != 1) {
    throw Error(ErrorCode::kModelFormat, part.part + " " + part.where.string() + ": one release file expected");
  }
  const std::string f = part.files[0].string();
  if (part.files[0].extension() == ".safetensors") return std::make_unique<SafetensorsFile>(f);  // release names
  return std::make_unique<PthFile>(f);
}

}  // namespace wand::model
