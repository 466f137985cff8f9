#include "model/formats/renamed_source.h"

#include <algorithm>

#include "common/error.h"

namespace wand::model {

namespace fs = std::filesystem;

RenamedSource::RenamedSource(const std::vector<std::string>& files, Rename rename, std::string what,
                             const std::vector<std::string>& ignored)
    : what_(std::move(what)) {
  if (files.empty()) throw Error(ErrorCode::kModelFormat, what_ + ": no safetensors files");
  for (const std::string& path : files) {
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    const SafetensorsFile* f = files_.back().get();
    for (const std::string& key : f->names()) {
      if (std::find(ignored.begin(), ignored.end(), key) != ignored.end()) continue;
      const std::optional<std::string> name = rename(key);
      if (!name) {
        throw Error(ErrorCode::kModelFormat, path + ": unexpected key '" + key + "' for " + what_);
      }
      TensorInfo ti = f->info(key);
      auto it = info_.find(*name);
      if (it != info_.end()) {  // a tied weight stored twice: keep the first
        if (it->second.shape != ti.shape) {
          throw Error(ErrorCode::kModelFormat, path + ": key '" + key + "' is a second copy of '" + *name +
                                                   "' with another shape");
        }
        continue;
      }
      ti.name = *name;
      info_.emplace(*name, std::move(ti));
      where_.emplace(*name, std::make_pair(f, key));
      names_.push_back(*name);
    }
  }
}

std::vector<std::string> RenamedSource::folder_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors") out.push_back(e.path().string());
  }
  if (ec) throw Error(ErrorCode::kModelFormat, dir.string() + ": cannot list (" + ec.message() + ")");
  if (out.empty()) throw Error(ErrorCode::kModelFormat, dir.string() + ": no *.safetensors files");
  std::sort(out.begin(), out.end());
  return out;
}

const TensorInfo& RenamedSource::info(const std::string& name) const {
  auto it = info_.find(name);
  if (it == info_.end()) throw Error(ErrorCode::kModelFormat, what_ + ": no key '" + name + "'");
  return it->second;
}

at::Tensor RenamedSource::load(const std::string& name, c10::optional<at::ScalarType> dtype) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(ErrorCode::kModelFormat, what_ + ": no key '" + name + "'");
  return it->second.first->load(it->second.second, dtype);
}

}  // namespace wand::model
