#include "scheduler/pipeline_registry.h"

#include "common/error.h"
#include "common/log.h"

namespace wand::sched {

namespace fs = std::filesystem;

void PipelineRegistry::add_factory(PipelineFactory factory) {
  std::lock_guard<std::mutex> lock(mu_);
  factories_.push_back(std::move(factory));
}

const PipelineFactory& PipelineRegistry::factory_for(const fs::path& dir) const {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error(ErrorCode::kConfig, "model directory " + dir.string() + " does not exist");
  }
  for (const auto& f : factories_) {
    if (f.probe(dir)) return f;
  }
  throw Error(ErrorCode::kConfig,
              "model directory " + dir.string() + " is not recognised by any pipeline");
}

void PipelineRegistry::add_model(const std::string& name, const fs::path& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (name.empty()) throw Error(ErrorCode::kConfig, "model name is empty (dir " + dir.string() + ")");
  const PipelineFactory& f = factory_for(dir);
  models_[name] = ModelEntry{name, dir, f.name};
  loaded_.erase(name);
  log::get("sched")->info("model name={} dir={} pipeline={}", name, dir.string(), f.name);
}

void PipelineRegistry::set_models(const std::map<std::string, fs::path>& models) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, ModelEntry> next;
  for (const auto& [name, dir] : models) {
    const PipelineFactory& f = factory_for(dir);
    next[name] = ModelEntry{name, dir, f.name};
  }
  for (auto it = loaded_.begin(); it != loaded_.end();) {
    auto n = next.find(it->first);
    auto o = models_.find(it->first);
    bool same = n != next.end() && o != models_.end() && n->second.dir == o->second.dir;
    it = same ? std::next(it) : loaded_.erase(it);
  }
  models_ = std::move(next);
}

std::vector<ModelEntry> PipelineRegistry::models() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelEntry> out;
  for (const auto& [_, m] : models_) out.push_back(m);
  return out;
}

bool PipelineRegistry::has_model(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return models_.count(name) != 0;
}

std::shared_ptr<Pipeline> PipelineRegistry::pipeline(const std::string& model) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model);
  if (it == models_.end()) throw Error(ErrorCode::kNotFound, "unknown model '" + model + "'");
  auto l = loaded_.find(model);
  if (l != loaded_.end()) return l->second;
  for (const auto& f : factories_) {
    if (f.name == it->second.factory) {
      std::shared_ptr<Pipeline> p = f.make(it->second.dir);
      loaded_[model] = p;
      return p;
    }
  }
  throw Error(ErrorCode::kInternal, "factory " + it->second.factory + " vanished");
}

VideoEncoder PipelineRegistry::encoder(const std::string& model) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model);
  if (it == models_.end()) throw Error(ErrorCode::kNotFound, "unknown model '" + model + "'");
  for (const auto& f : factories_) {
    if (f.name == it->second.factory) return f.encoder;
  }
  throw Error(ErrorCode::kInternal, "factory " + it->second.factory + " vanished");
}

}  // namespace wand::sched
