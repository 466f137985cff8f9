// PipelineRegistry: maps model names to model directories and directories to
// the pipeline factory that can run them. A factory recognises a directory by
// its contents (probe); the first factory whose probe accepts wins.
//
//   PipelineRegistry reg;
//   register_fake_pipeline(reg);                  // dirs holding wand-fake-model.json
//   reg.add_factory({"wan", probe_wan_dir, make_wan_pipeline, encode_mp4});  // model/ side
//   reg.add_model("tiny", "/var/lib/wand/models/tiny");   // throws Error(kConfig)
//   std::shared_ptr<Pipeline> p = reg.pipeline("tiny");    // created on first use
//   // job-parallel: one pipeline per (model, device slot), built by the factory's
//   // make_on(dir, slot) when it has one, else by make(dir)
//   std::shared_ptr<Pipeline> p1 = reg.pipeline("tiny", DeviceSlot{1, 12ull << 30, "cuda:1"});
//   // one job on several cards (issue 7): one pipeline per (model, group.key()), built by
//   // the factory's make_group(dir, group); Error(kConfig) when the factory has none
//   std::shared_ptr<Pipeline> g = reg.pipeline("tiny", DeviceGroup{{slot0, slot1}, "cfg-parallel"});
//
// Owns the pipelines it creates (one per (model, slot index) and one per (model, group
// key), cached; pipeline(model) is slot 0's). Thread-safe: every
// method takes the registry's mutex briefly; creating a pipeline (which may load
// weights) happens outside it, under the model's own slot mutex, so models() and
// loaded() never wait for a model load.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/model_traits.h"
#include "scheduler/pipeline.h"

namespace wand::sched {

struct PipelineFactory {
  std::string name;                                                       // "fake", "wan"
  std::function<bool(const std::filesystem::path& dir)> probe;
  std::function<std::unique_ptr<Pipeline>(const std::filesystem::path& dir)> make;
  VideoEncoder encoder;
  // Optional: checks a spec without creating the pipeline (throws Error(kBadRequest)).
  std::function<void(const std::filesystem::path& dir, const JobSpec& spec)> validate;
  // Optional: makes the pipeline for one device slot (its device, its VRAM budget).
  // When unset, make(dir) is used for every slot (the pipeline ignores the slot).
  std::function<std::unique_ptr<Pipeline>(const std::filesystem::path& dir, const DeviceSlot& slot)> make_on;
  // Optional: makes the pipeline that runs one job over a group of cards (DeviceGroup:
  // the members in rank order and the strategy). Unset: the model cannot run grouped.
  std::function<std::unique_ptr<Pipeline>(const std::filesystem::path& dir, const DeviceGroup& group)> make_group;
  // Optional: the model's traits from its directory (configs only, never weights).
  std::function<ModelTraits(const std::filesystem::path& dir)> traits;
};

struct ModelEntry {
  std::string name;
  std::filesystem::path dir;
  std::string factory;
};

class PipelineRegistry {
 public:
  void add_factory(PipelineFactory factory);
  // Throws Error(kConfig) when the directory is missing or no factory accepts it.
  void add_model(const std::string& name, const std::filesystem::path& dir);
  // Replaces the model table (SIGHUP); cached pipelines of unchanged entries survive.
  void set_models(const std::map<std::string, std::filesystem::path>& models);
  std::vector<ModelEntry> models() const;
  bool has_model(const std::string& name) const;
  // Throws Error(kNotFound) for an unknown model; creation errors propagate.
  // May take long (first use loads the model): call it from the runner, not the io thread.
  std::shared_ptr<Pipeline> pipeline(const std::string& model);
  // The pipeline of `model` for one device slot (one per (model, slot.index)).
  std::shared_ptr<Pipeline> pipeline(const std::string& model, const DeviceSlot& slot);
  // The pipeline of `model` for one group of cards (one per (model, group.key())), made by
  // the factory's make_group. Throws Error(kNotFound) for an unknown model, Error(kConfig)
  // naming the model and the group when its factory has no make_group or the group has no
  // member; creation errors propagate.
  std::shared_ptr<Pipeline> pipeline(const std::string& model, const DeviceGroup& group);
  // Whether the model's factory can make group pipelines (false for an unknown model).
  bool can_group(const std::string& model) const;
  // A pipeline of the model already created (on any slot, lowest index first, then the
  // group ones), else nullptr. Never creates one.
  std::shared_ptr<Pipeline> loaded(const std::string& model) const;
  // Model-specific checks without loading anything: the loaded pipeline's
  // validate(), else the factory's validate when it has one (the Wan factory's reads the
  // directory's config.json: the same checks before and after the first load), else
  // nothing (the runner's prepare() checks). Throws Error(kBadRequest) / Error(kNotFound).
  void validate(const std::string& model, const JobSpec& spec) const;
  VideoEncoder encoder(const std::string& model) const;
  // The factory's traits of the model's directory; empty traits when the factory has none.
  // Throws Error(kNotFound) for an unknown model; reading errors propagate.
  ModelTraits traits(const std::string& model) const;

 private:
  const PipelineFactory& factory_for(const std::filesystem::path& dir) const;  // needs mu_
  const PipelineFactory* factory_of(const std::string& model) const;            // needs mu_

  struct Slot {
    std::mutex mu;                      // held while creating
    std::shared_ptr<Pipeline> pipeline;  // guarded by mu
  };

  mutable std::mutex mu_;
  std::vector<PipelineFactory> factories_;                    // guarded by mu_
  std::map<std::string, ModelEntry> models_;                  // guarded by mu_
  // model -> slot index -> its pipeline holder; guarded by mu_
  std::map<std::string, std::map<int, std::shared_ptr<Slot>>> loaded_;
  // model -> group key -> its pipeline holder; guarded by mu_
  std::map<std::string, std::map<std::string, std::shared_ptr<Slot>>> groups_;
};

}  // namespace wand::sched
