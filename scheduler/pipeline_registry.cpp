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
  groups_.erase(name);
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
  for (auto it = groups_.begin(); it != groups_.end();) {
    auto n = next.find(it->first);
    auto o = models_.find(it->first);
    bool same = n != next.end() && o != models_.end() && n->second.dir == o->second.dir;
    it = same ? std::next(it) : groups_.erase(it);
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
  return pipeline(model, DeviceSlot{});
}

std::shared_ptr<Pipeline> PipelineRegistry::pipeline(const std::string& model, const DeviceSlot& device) {
  std::shared_ptr<Slot> slot;
  std::function<std::unique_ptr<Pipeline>(const fs::path&)> make;
  std::function<std::unique_ptr<Pipeline>(const fs::path&, const DeviceSlot&)> make_on;
  fs::path dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model);
    if (it == models_.end()) throw Error(ErrorCode::kNotFound, "unknown model '" + model + "'");
    auto& s = loaded_[model][device.index];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
    dir = it->second.dir;
    for (const auto& f : factories_) {
      if (f.name == it->second.factory) {
        make = f.make;
        make_on = f.make_on;
      }
    }
    if (!make && !make_on) throw Error(ErrorCode::kInternal, "factory " + it->second.factory + " vanished");
  }
  std::lock_guard<std::mutex> lock(slot->mu);
  if (!slot->pipeline) {
    log::get("sched")->info("model load name={} dir={} slot={} budget={}", model, dir.string(), device.name,
                            device.vram_budget_bytes ? format_bytes(device.vram_budget_bytes) : "unlimited");
    slot->pipeline = make_on ? make_on(dir, device) : make(dir);
  }
  return slot->pipeline;
}

const PipelineFactory* PipelineRegistry::factory_of(const std::string& model) const {
  auto it = models_.find(model);
  if (it == models_.end()) return nullptr;
  for (const auto& f : factories_) {
    if (f.name == it->second.factory) return &f;
  }
  return nullptr;
}

bool PipelineRegistry::can_group(const std::string& model) const {
  std::lock_guard<std::mutex> lock(mu_);
  const PipelineFactory* f = factory_of(model);
  return f && f->make_group;
}

std::shared_ptr<Pipeline> PipelineRegistry::pipeline(const std::string& model, const DeviceGroup& group) {
  std::shared_ptr<Slot> slot;
  std::function<std::unique_ptr<Pipeline>(const fs::path&, const DeviceGroup&)> make_group;
  fs::path dir;
  const std::string key = group.key();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model);
    if (it == models_.end()) throw Error(ErrorCode::kNotFound, "unknown model '" + model + "'");
    const PipelineFactory* f = factory_of(model);
    if (!f) throw Error(ErrorCode::kInternal, "factory " + it->second.factory + " vanished");
    if (!f->make_group) {
      throw Error(ErrorCode::kConfig, "model '" + model + "' (pipeline " + f->name +
                                          ") cannot run one job on several cards (group " + key +
                                          "): its factory has no make_group");
    }
    if (group.members.empty()) {
      throw Error(ErrorCode::kConfig, "model '" + model + "': device group " + key + " has no member");
    }
    make_group = f->make_group;
    dir = it->second.dir;
    auto& s = groups_[model][key];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  std::lock_guard<std::mutex> lock(slot->mu);
  if (!slot->pipeline) {
    std::string members;
    for (const DeviceSlot& m : group.members) {
      members += (members.empty() ? "" : ",") + m.name + "=" +
                 (m.vram_budget_bytes ? format_bytes(m.vram_budget_bytes) : std::string("unlimited"));
    }
    log::get("sched")->info("model load name={} dir={} group={} members={}", model, dir.string(), key, members);
    slot->pipeline = make_group(dir, group);
  }
  return slot->pipeline;
}

std::shared_ptr<Pipeline> PipelineRegistry::loaded(const std::string& model) const {
  std::vector<std::shared_ptr<Slot>> slots;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = loaded_.find(model);
    if (it != loaded_.end()) {
      for (const auto& [_, s] : it->second) slots.push_back(s);
    }
    auto g = groups_.find(model);
    if (g != groups_.end()) {
      for (const auto& [_, s] : g->second) slots.push_back(s);
    }
    if (slots.empty()) return nullptr;
  }
  for (const auto& slot : slots) {
    std::unique_lock<std::mutex> lock(slot->mu, std::try_to_lock);
    if (lock.owns_lock() && slot->pipeline) return slot->pipeline;  // being created: not yet
  }
  return nullptr;
}

void PipelineRegistry::validate(const std::string& model, const JobSpec& spec) const {
  if (auto p = loaded(model)) {
    p->validate(spec);
    return;
  }
  std::function<void(const fs::path&, const JobSpec&)> check;
  fs::path dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model);
    if (it == models_.end()) throw Error(ErrorCode::kNotFound, "unknown model '" + model + "'");
    dir = it->second.dir;
    for (const auto& f : factories_) {
      if (f.name == it->second.factory) check = f.validate;
    }
  }
  if (check) check(dir, spec);
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

ModelTraits PipelineRegistry::traits(const std::string& model) const {
  std::function<ModelTraits(const fs::path&)> read;
  fs::path dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model);
    if (it == models_.end()) throw Error(ErrorCode::kNotFound, "unknown model '" + model + "'");
    dir = it->second.dir;
    if (const PipelineFactory* f = factory_of(model)) read = f->traits;
  }
  return read ? read(dir) : ModelTraits{};  // outside mu_: reads files
}

}  // namespace wand::sched
