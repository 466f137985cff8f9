// DaemonConfig: wand's configuration, from a JSON file (comments allowed: // and
// /* */, and any key starting with "_" is ignored, e.g. "_comment"), overridden by
// command-line flags. Validated at start: every error names the file and field.
//
//   DaemonConfig c = load_config_file("/etc/wand/wand.json");   // throws Error(kConfig)
//   DaemonConfig d = parse_config(json, "<flags>");
//   nlohmann::json j = config_to_json(c);                        // effective config
//
// The "memory" section is memory::PoolConfig's (validated by PoolConfig::from_json)
// and passed through unchanged to the pool the daemon builds at start; absent (or "auto"),
// the daemon sizes the pool from the machine at start (Note [Auto memory],
// daemon/auto_memory.h); "off": no pool, models run resident. The "executor"
// section tunes streamed Wan jobs (used when the pool has a device tier):
//   "executor": {"device_budget": "24GiB", "context_bytes": "600MiB", "activation_bytes": 0,
//                "window": 0, "host_window": 0, "chunk_tokens": -1, "pack_dir": "",
//                "run_dtype": "", "parallel": "auto"}
// (docs/operations.md, "Streaming" and "Several cards"). "parallel" is how one job may use
// several cards (Note [Daemon card groups], daemon.cpp): "auto" (planner v2's latency choice
// for a job alone on >= 2 idle cards), "off" (job-parallel only), or a strategy name
// ("cfg-parallel", "ulysses-2", "cfg2xulysses-2": scheduler/multigpu/parallel_strategy.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_request.h"  // LoraRef
#include "memory/pool_config.h"

namespace wand::daemon {

// Streamed execution settings (scheduler/exec StreamedDitOptions; sizes in bytes).
struct ExecutorConfig {
  std::uint64_t device_budget = 0;     // everything on the card; 0: no whole-card check, no chunking
  std::uint64_t context_bytes = 0;     // CUDA context + kernels (measured by the operator)
  std::uint64_t activation_bytes = 0;  // 0: device_budget - context - slots - non-block weights
  std::uint64_t window = 0;            // device prefetch window; 0: from the device tier
  std::uint64_t host_window = 0;       // 0: both experts stay in host memory
  std::int64_t chunk_tokens = -1;      // -1: from the budget; 0: never chunk
  std::string pack_dir;                // "": the disk tier's dir, else <state_dir>/pack
  std::string run_dtype;               // "" | fp32 | bf16 | fp16 ("": bf16 on CUDA, fp32 on the CPU)
  std::string parallel = "auto";       // "auto" | "off" | a strategy name of >= 2 cards ("cfg-parallel", ...)
  bool operator==(const ExecutorConfig& o) const {
    return device_budget == o.device_budget && context_bytes == o.context_bytes &&
           activation_bytes == o.activation_bytes && window == o.window && host_window == o.host_window &&
           chunk_tokens == o.chunk_tokens && pack_dir == o.pack_dir && run_dtype == o.run_dtype &&
           parallel == o.parallel;
  }
  bool operator!=(const ExecutorConfig& o) const { return !(*this == o); }
};

// Note [Card budget]: one number per card says how much of it wand may use: the card
// budget, the whole card's usable memory (e.g. 23 GiB of a 24 GiB card, the rest left to the
// display and the driver). The planner checks a job against it and the streaming executor
// checks the same sum at the job's start, so `wanctl plan` and the job agree:
//   budget >= CUDA context + device tier (weight slots) + non-block weights + activations
// The device tier (memory.devices[].bytes) is one part of it, allocated whole at start; the
// activation room a job gets is budget - context - tier - non-block weights. Worked example
// (1x24gb.json, i2v-A14B 1280x720x81 = 75,600 tokens): budget 23 GiB - context 600 MiB - tier
// 10 GiB - non-block weights of both experts 0.87 GiB = 11.6 GiB of activation room; the
// planner's estimate for a CFG step in 16,384-token chunks is 8.7 GiB x 1.125 (the allocator
// cap) = 9.8 GiB: fits. With the 16 GiB tier the example used to have, the room is 5.6 GiB and
// no chunk fits. Where the budget comes from, first match (card_budgets()):
//   1. memory.devices[i].budget;
//   2. executor.device_budget (the same number for every card without its own);
//   3. the auto memory section: the card's total memory less kAutoDeviceHeadroom
//      (daemon/auto_memory.h), also filled in for a configured CUDA card without 1. or 2.
//      when the daemon can see it (resolve_memory);
//   4. none: the tier is all the planner knows (it takes the tier for the whole card) and the
//      executor checks nothing (no allocator cap, no chunking). `wand --check-config` warns.
// Below this much activation room beside the tier and the context (the non-block weights live
// there too), `--check-config` warns: the two fp32 residual streams of an A14B step alone take
// 1.25 GiB at 832x480.
constexpr std::uint64_t kMinActivationRoom = 2ull << 30;

struct CardBudget {
  int index = 0;                  // memory.devices[].index
  std::uint64_t tier_bytes = 0;   // memory.devices[].bytes: the device tier (weight slots)
  std::uint64_t budget_bytes = 0; // the whole card; 0: none known (4. above)
  std::string backend = "auto";   // memory.devices[].backend
  std::string source;             // where budget_bytes came from, in words ("" when none)
};

struct DaemonConfig {
  std::string socket_path = "/run/wand/wand.sock";
  std::string socket_group;                 // "" = the daemon's own group
  unsigned socket_mode = 0660;
  std::string state_dir = "/var/lib/wand";
  std::string admin_group = "wand-admin";   // members see and cancel every job; "" = none
  std::uint32_t max_message_bytes = 8u << 20;
  int max_clients = 512;
  std::string log_level = "info";
  std::map<std::string, std::string> models;  // name -> model directory
  // Note [Daemon LoRAs] (daemon/lora_catalog.h): the LoRAs the daemon serves, name -> file
  // (the "loras" section: a directory, each *.safetensors file named by its stem, or an
  // object mapping names to files), and each model's default LoRAs ("models": {"NAME":
  // {"dir": DIR, "loras": ["NAME[:S][@high|@low]", ...]}}). Checked at load: the files
  // exist, the names are names, every default names a served LoRA.
  std::map<std::string, std::string> loras;
  std::string lora_dir;                                     // when "loras" is a directory
  std::map<std::string, std::vector<LoraRef>> model_loras;  // model name -> default LoRAs
  // name -> the model's weights_dtype ("fp8", "run"; absent: "auto"), from an entry
  // "models": {"a14b": {"dir": "/srv/Wan2.2-T2V-A14B", "weights_dtype": "fp8"}} (Note [fp8
  // stored dtype], model/weight_storage.h). weights_of() reads it.
  std::map<std::string, std::string> model_weights;
  std::string weights_of(const std::string& model) const {
    auto it = model_weights.find(model);
    return it == model_weights.end() ? "auto" : it->second;
  }
  // "config": memory() is the file's section; "auto": none in the file (or "auto"), memory()
  // is null until the daemon sizes it from the machine (resolve_memory, auto_memory.h), then
  // that section; "off": no pool (resident models).
  std::string memory_mode = "auto";
  ExecutorConfig executor;

  // Note [One memory section]: the memory section is kept twice, as the JSON it was given
  // (printed by --check-config, compared by SIGHUP's reload, with the "_budget_source" marks
  // of resolve_memory) and parsed (memory::PoolConfig: the pool, the card budgets, the
  // planner's machine, `tiers`). Both are set here only, so they never disagree and nobody
  // parses the JSON again. null: no section (no pool). Throws Error(kConfig) naming the field
  // for a bad section (and keeps the previous one).
  void set_memory(nlohmann::json section);
  const nlohmann::json& memory() const { return memory_; }
  const memory::PoolConfig* pool_config() const { return pool_ ? &*pool_ : nullptr; }

 private:
  nlohmann::json memory_;                    // memory::PoolConfig JSON (null: not configured)
  std::optional<memory::PoolConfig> pool_;   // memory_ parsed; empty iff memory_ is null
};

// Note [Card budget]: each memory.devices[] entry of cfg.memory() with its tier and budget, in
// memory.devices[] order (empty without a memory section). The one place the budget formula
// lives; the daemon calls it once at start, on the resolved section, and hands the result to
// the pool's cards, the planner's machine and `tiers` (Note [Daemon slots], daemon.h).
std::vector<CardBudget> card_budgets(const DaemonConfig& cfg);

// What `wand --check-config` warns about (the daemon starts anyway; each line names the
// field and says what to change): a host tier below what a configured Wan model needs (Note
// [Host tier need], config.cpp: reads the model's headers); a device tier without a card
// budget; a tier that leaves no activation room (budget - context - tier); a tier larger
// than its card's budget; a served LoRA whose file cannot be read, or a model's default LoRA
// that does not fit the model (its keys or shapes, model/formats/lora_keys.h).
std::vector<std::string> config_warnings(const DaemonConfig& cfg);

nlohmann::json executor_to_json(const ExecutorConfig& e);

DaemonConfig parse_config(const nlohmann::json& j, const std::string& source);
DaemonConfig load_config_file(const std::filesystem::path& file);
nlohmann::json config_to_json(const DaemonConfig& c);

}  // namespace wand::daemon
