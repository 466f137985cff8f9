// LoraCatalog: the LoRAs the daemon serves and each model's defaults, from its config.
//
//   LoraCatalog cat(cfg);                       // cfg.loras, cfg.model_loras
//   cat.resolve(spec, model_dir);               // at submit: throws Error(kBadRequest)
//   proto::ModelList list;  cat.describe(list, peer.admin);   // `models`
//
// Note [Daemon LoRAs]: a job names LoRAs; the daemon opens only files of its own config
// (Note [LoRA references], common/job_request.h). At submit, resolve() computes the job's
// effective set (the model's defaults with the request's entries replacing those of the same
// name, strength 0 dropped), refuses an unknown name (listing the served ones), then reads
// each file's header and checks every key against the model's DiT config
// (model/formats/lora_keys.h index_lora: the layout, the modules, the shapes and ranks), so a
// LoRA for another model or a broken file is a bad_request at submit naming the LoRA, the
// file (admins; users see "<lora NAME>") and the key; the daemon keeps serving. The spec then
// carries the effective loras and their files (sched::JobSpec::lora_files, journaled), which
// the pipeline reads at the job's start (model/lora.h); a file changed after submit is checked
// again there and fails that job alone.
// Immutable after construction; handlers use it on the io thread (reload replaces it there).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/job_request.h"
#include "proto/responses.h"
#include "scheduler/job_spec.h"

namespace wand::daemon {

struct DaemonConfig;

class LoraCatalog {
 public:
  LoraCatalog() = default;
  explicit LoraCatalog(const DaemonConfig& cfg);

  bool empty() const { return files_.empty(); }
  // Note [Daemon LoRAs]. model_dir: the model's directory (its DiT config.json is read).
  void resolve(sched::JobSpec& spec, const std::filesystem::path& model_dir) const;
  // The served LoRAs (headers read now) into list.loras, each model's defaults into its entry.
  void describe(proto::ModelList& list, bool admin) const;
  const std::map<std::string, std::string>& files() const { return files_; }

 private:
  std::map<std::string, std::string> files_;                 // name -> file
  std::map<std::string, std::vector<LoraRef>> defaults_;     // model -> default LoRAs
};

// Config helpers (daemon/config.cpp): every *.safetensors file of `dir` by its stem (Error(kConfig)
// naming `field` for a missing directory or a file whose stem is not a LoRA name); a file that
// is not a readable regular file; "the loras section serves a, b" for messages.
std::map<std::string, std::string> lora_files_in_dir(const std::string& dir, const std::string& field);
void check_lora_file(const std::string& file, const std::string& field);
std::string served_loras_text(const std::map<std::string, std::string>& files);
// --check-config: a served LoRA whose header cannot be read; a model's default LoRA that does
// not fit the model.
void lora_warnings(const DaemonConfig& cfg, std::vector<std::string>& w);

}  // namespace wand::daemon
