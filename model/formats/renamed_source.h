// RenamedSource: a TensorSource over safetensors files stored under another model's key
// names, served under wand's names. Each tensor's TensorInfo keeps its file path and byte
// offset (only the name changes), so readers that stream byte ranges still can.
//
//   RenamedSource src(RenamedSource::folder_files("Wan2.2-T2V-A14B-Diffusers/text_encoder"),
//                     formats::wand_umt5_key, "umT5 (transformers naming)");
//   T5Encoder enc = T5Encoder::load(src, RunDtype::kBFloat16, dev);
//
// Every key of the files must have a name (rename returns one), else Error(kModelFormat)
// naming the file and the key; two file keys of one name (a tied embedding stored twice)
// keep the first when the shapes agree, else the same error. Owns the opened files.
// Immutable after construction: any thread.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "model/tensor_source.h"

namespace wand::model {

class RenamedSource : public TensorSource {
 public:
  using Rename = std::function<std::optional<std::string>(const std::string& file_key)>;

  // ignored: file keys that are not tensors of the model and are skipped (ComfyUI's umT5
  // files may carry the tokenizer as a "spiece_model" byte tensor).
  RenamedSource(const std::vector<std::string>& files, Rename rename, std::string what,
                const std::vector<std::string>& ignored = {});

  // The *.safetensors files of a folder (transformers / diffusers save_pretrained), sorted;
  // throws Error(kModelFormat) naming the folder when there are none.
  static std::vector<std::string> folder_files(const std::filesystem::path& dir);

  std::vector<std::string> names() const override { return names_; }
  bool contains(const std::string& name) const override { return info_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const override;
  at::Tensor load(const std::string& name, c10::optional<at::ScalarType> dtype = c10::nullopt) const override;
  std::string describe() const override { return what_; }

 private:
  std::string what_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorInfo> info_;                                          // wand name -> info
  std::map<std::string, std::pair<const SafetensorsFile*, std::string>> where_;     // wand name -> file, key
  std::vector<std::string> names_;                                                  // in file order
};

}  // namespace wand::model
