#include "daemon/config.h"

#include <fstream>

#include "common/error.h"
#include "daemon/lora_catalog.h"
#include "memory/pool_config.h"
#include "scheduler/multigpu/parallel_strategy.h"
#include "scheduler/plan/calibration.h"
#include "scheduler/plan/card_plan.h"
#include "scheduler/plan/cost_model.h"
#include "scheduler/plan/model_shape.h"
#include "model/weight_storage.h"

namespace wand::daemon {

using nlohmann::json;

namespace {

struct Ctx {
  const std::string& source;
  [[noreturn]] void bad(const std::string& field, const std::string& why) const {
    throw Error(ErrorCode::kConfig, source + ": field '" + field + "': " + why);
  }
  std::string str(const json& v, const std::string& field) const {
    if (!v.is_string()) bad(field, std::string("expected a string, got ") + v.type_name());
    return v.get<std::string>();
  }
  std::int64_t integer(const json& v, const std::string& field, std::int64_t lo, std::int64_t hi) const {
    if (!v.is_number_integer()) bad(field, std::string("expected an integer, got ") + v.type_name());
    auto x = v.get<std::int64_t>();
    if (x < lo || x > hi) {
      bad(field, std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return x;
  }
};

json strip_comments(const json& j) {
  if (j.is_object()) {
    json out = json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.key().empty() && it.key()[0] == '_') continue;
      out[it.key()] = strip_comments(it.value());
    }
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& e : j) out.push_back(strip_comments(e));
    return out;
  }
  return j;
}

}  // namespace

void DaemonConfig::set_memory(json section) {
  // Note [One memory section]: parsed first, so a bad section changes nothing.
  std::optional<memory::PoolConfig> parsed;
  if (!section.is_null()) parsed = memory::PoolConfig::from_json(section);
  memory_ = std::move(section);
  pool_ = std::move(parsed);
}

DaemonConfig parse_config(const json& raw, const std::string& source) {
  Ctx c{source};
  if (!raw.is_object()) c.bad("(top level)", "expected a JSON object");
  json j = strip_comments(raw);
  DaemonConfig cfg;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "socket") {
      if (!v.is_object()) c.bad("socket", "expected an object");
      for (auto s = v.begin(); s != v.end(); ++s) {
        std::string f = "socket." + s.key();
        if (s.key() == "path") {
          cfg.socket_path = c.str(s.value(), f);
          if (cfg.socket_path.empty() || cfg.socket_path[0] != '/') c.bad(f, "must be an absolute path");
          if (cfg.socket_path.size() >= 108) c.bad(f, "longer than a unix socket path may be (107)");
        } else if (s.key() == "group") {
          cfg.socket_group = c.str(s.value(), f);
        } else if (s.key() == "mode") {
          std::string m = c.str(s.value(), f);
          std::size_t used = 0;
          unsigned long mode = 0;
          try {
            mode = std::stoul(m, &used, 8);
          } catch (...) {
            used = 0;
          }
          if (used != m.size() || m.empty() || mode > 0777) c.bad(f, "expected an octal mode such as \"0660\"");
          cfg.socket_mode = static_cast<unsigned>(mode);
        } else {
          c.bad(f, "unknown field (expected path, group, mode)");
        }
      }
    } else if (k == "state_dir") {
      cfg.state_dir = c.str(v, k);
      if (cfg.state_dir.empty()) c.bad(k, "must not be empty");
    } else if (k == "admin_group") {
      cfg.admin_group = c.str(v, k);
    } else if (k == "max_message_bytes") {
      if (v.is_string()) {
        cfg.max_message_bytes = static_cast<std::uint32_t>(
            std::min<std::uint64_t>(memory::parse_bytes(v, k), 0xffffffffu));
      } else {
        cfg.max_message_bytes = static_cast<std::uint32_t>(c.integer(v, k, 4096, 1ll << 30));
      }
      if (cfg.max_message_bytes < 4096 || cfg.max_message_bytes > (1u << 30)) {
        c.bad(k, "must be between 4 KiB and 1 GiB");
      }
    } else if (k == "max_clients") {
      cfg.max_clients = static_cast<int>(c.integer(v, k, 1, 100000));
    } else if (k == "log_level") {
      cfg.log_level = c.str(v, k);
      static const char* kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
      bool ok = false;
      for (const char* l : kLevels) ok = ok || cfg.log_level == l;
      if (!ok) c.bad(k, "'" + cfg.log_level + "' is not one of trace, debug, info, warn, error, off");
    } else if (k == "models") {
      if (!v.is_object()) c.bad(k, "expected an object mapping model names to directories");
      for (auto m = v.begin(); m != v.end(); ++m) {
        std::string f = "models." + m.key();
        std::string dir;
        if (m.value().is_object()) {  // {"dir": DIR, "loras": [...], "weights_dtype": ...}
          for (auto e = m.value().begin(); e != m.value().end(); ++e) {
            const std::string fx = f + "." + e.key();
            if (e.key() == "dir") {
              dir = c.str(e.value(), fx);
            } else if (e.key() == "loras") {  // Note [Daemon LoRAs]
              if (!e.value().is_array()) c.bad(fx, "expected an array of \"NAME[:STRENGTH][@high|@low]\"");
              std::vector<LoraRef> defaults;
              for (std::size_t i = 0; i < e.value().size(); ++i) {
                const std::string fi = fx + "[" + std::to_string(i) + "]";
                try {
                  defaults.push_back(parse_lora_ref(c.str(e.value()[i], fi), fi));
                } catch (const Error& err) {
                  throw Error(ErrorCode::kConfig, source + ": " + err.what());
                }
              }
              cfg.model_loras[m.key()] = defaults;
            } else if (e.key() == "weights_dtype") {  // Note [fp8 stored dtype]
              const std::string w = c.str(e.value(), fx);
              try {
                model::parse_weights_dtype(w, fx);
              } catch (const Error& err) {
                c.bad(fx, err.what());
              }
              if (w != "auto") cfg.model_weights[m.key()] = w;
            } else {
              c.bad(fx, "unknown field (expected dir, loras, weights_dtype)");
            }
          }
          if (!m.value().contains("dir")) c.bad(f, "expected a \"dir\"");
        } else {
          dir = c.str(m.value(), f);
        }
        if (dir.empty()) c.bad(f, "empty directory");
        cfg.models[m.key()] = dir;
      }
    } else if (k == "loras") {
      try {
        if (v.is_string()) {
          cfg.lora_dir = v.get<std::string>();
          cfg.loras = lora_files_in_dir(cfg.lora_dir, "loras");
        } else if (v.is_object()) {
          for (auto m = v.begin(); m != v.end(); ++m) {
            const std::string f = "loras." + m.key();
            check_lora_ref(LoraRef{m.key()}, f);
            const std::string file = c.str(m.value(), f);
            check_lora_file(file, f);
            cfg.loras[m.key()] = file;
          }
        } else if (!v.is_null()) {
          c.bad(k, "expected a directory of .safetensors files or an object mapping LoRA names to files");
        }
      } catch (const Error& err) {
        if (err.code() == ErrorCode::kConfig && std::string(err.what()).rfind(source, 0) == 0) throw;
        throw Error(ErrorCode::kConfig, source + ": " + err.what());
      }
    } else if (k == "memory") {
      // Absent or null (the default) or "auto": sized from the machine at start (Note [Auto
      // memory]); "off": no pool.
      if (v.is_null() || (v.is_string() && v.get<std::string>() == "auto")) continue;
      if (v.is_string() && v.get<std::string>() == "off") {
        cfg.memory_mode = "off";
        continue;
      }
      if (!v.is_object()) {
        c.bad(k, "expected an object (host, disk, devices, io), \"auto\" (sized from the machine) or \"off\" (no pool)");
      }
      cfg.memory_mode = "config";
      try {
        cfg.set_memory(v);
      } catch (const Error& e) {
        throw Error(ErrorCode::kConfig, source + ": " + e.what());
      }
    } else if (k == "executor") {
      if (v.is_null()) continue;
      if (!v.is_object()) c.bad(k, "expected an object");
      ExecutorConfig& e = cfg.executor;
      auto size = [&](const json& x, const std::string& f) {
        try {
          return memory::parse_bytes(x, f);
        } catch (const Error& err) {
          throw Error(ErrorCode::kConfig, source + ": " + err.what());
        }
      };
      for (auto s = v.begin(); s != v.end(); ++s) {
        const std::string f = "executor." + s.key();
        const json& x = s.value();
        if (s.key() == "device_budget") {
          e.device_budget = size(x, f);
        } else if (s.key() == "context_bytes") {
          e.context_bytes = size(x, f);
        } else if (s.key() == "activation_bytes") {
          e.activation_bytes = size(x, f);
        } else if (s.key() == "window") {
          e.window = size(x, f);
        } else if (s.key() == "host_window") {
          e.host_window = size(x, f);
        } else if (s.key() == "chunk_tokens") {
          e.chunk_tokens = c.integer(x, f, -1, 1ll << 30);
        } else if (s.key() == "pack_dir") {
          e.pack_dir = c.str(x, f);
          if (!e.pack_dir.empty() && e.pack_dir[0] != '/') c.bad(f, "must be an absolute path");
        } else if (s.key() == "run_dtype") {
          e.run_dtype = c.str(x, f);
          if (e.run_dtype != "" && e.run_dtype != "fp32" && e.run_dtype != "bf16" && e.run_dtype != "fp16") {
            c.bad(f, "'" + e.run_dtype + "' is not one of fp32, bf16, fp16 (or \"\" for the device's default)");
          }
        } else if (s.key() == "parallel") {
          e.parallel = c.str(x, f);
          if (e.parallel != "auto" && e.parallel != "off") {
            sched::ParallelStrategy ps;
            try {
              ps = sched::parse_strategy(e.parallel);
            } catch (const Error& err) {
              c.bad(f, std::string(err.what()) + "; expected \"auto\", \"off\" or a strategy name");
            }
            if (ps.ranks() < 2) c.bad(f, "'" + e.parallel + "' uses one card: write \"off\" for job-parallel only");
          }
        } else {
          c.bad(f, "unknown field (expected device_budget, context_bytes, activation_bytes, window, "
                   "host_window, chunk_tokens, pack_dir, run_dtype, parallel)");
        }
      }
    } else {
      c.bad(k, "unknown field (expected socket, state_dir, admin_group, max_message_bytes, "
               "max_clients, log_level, models, loras, memory, executor)");
    }
  }
  for (const auto& [model, defaults] : cfg.model_loras) {
    for (std::size_t i = 0; i < defaults.size(); ++i) {
      if (cfg.loras.count(defaults[i].name) == 0) {
        c.bad("models." + model + ".loras[" + std::to_string(i) + "]",
              "unknown LoRA '" + defaults[i].name + "' (" + served_loras_text(cfg.loras) + ")");
      }
    }
  }
  return cfg;
}

DaemonConfig load_config_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kConfig, file.string() + ": cannot open");
  json j;
  try {
    j = json::parse(in, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    throw Error(ErrorCode::kConfig, file.string() + ": not valid JSON: " + e.what());
  }
  return parse_config(j, file.string());
}

json executor_to_json(const ExecutorConfig& e) {
  return {{"device_budget", e.device_budget}, {"context_bytes", e.context_bytes},
          {"activation_bytes", e.activation_bytes}, {"window", e.window},
          {"host_window", e.host_window}, {"chunk_tokens", e.chunk_tokens},
          {"pack_dir", e.pack_dir}, {"run_dtype", e.run_dtype}, {"parallel", e.parallel}};
}

namespace {
json models_to_json(const DaemonConfig& c) {
  json m = json::object();
  for (const auto& [name, dir] : c.models) {
    auto d = c.model_loras.find(name);
    const bool loras = d != c.model_loras.end() && !d->second.empty();
    if (!loras && !c.model_weights.count(name)) {
      m[name] = dir;
      continue;
    }
    json e = {{"dir", dir}};
    if (loras) {
      json l = json::array();
      for (const LoraRef& r : d->second) l.push_back(lora_ref_text(r));
      e["loras"] = l;
    }
    if (c.model_weights.count(name)) e["weights_dtype"] = c.weights_of(name);
    m[name] = e;
  }
  return m;
}
}  // namespace

json config_to_json(const DaemonConfig& c) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "0%o", c.socket_mode);
  return {{"socket", {{"path", c.socket_path}, {"group", c.socket_group}, {"mode", mode}}},
          {"state_dir", c.state_dir},
          {"admin_group", c.admin_group},
          {"max_message_bytes", c.max_message_bytes},
          {"max_clients", c.max_clients},
          {"log_level", c.log_level},
          {"models", models_to_json(c)},
          {"loras", c.lora_dir.empty() ? json(c.loras) : json(c.lora_dir)},
          {"memory", c.memory_mode == "config" ? c.memory() : json(c.memory_mode)},
          {"executor", executor_to_json(c.executor)}};
}

std::vector<CardBudget> card_budgets(const DaemonConfig& cfg) {
  // Note [Card budget].
  std::vector<CardBudget> out;
  const memory::PoolConfig* pool = cfg.pool_config();
  if (!pool) return out;
  const memory::PoolConfig& pc = *pool;
  for (std::size_t i = 0; i < pc.devices.size(); ++i) {
    const memory::DeviceConfig& d = pc.devices[i];
    CardBudget b;
    b.index = d.index;
    b.tier_bytes = d.bytes;
    b.backend = d.backend;
    if (d.budget_bytes > 0) {
      b.budget_bytes = d.budget_bytes;
      // resolve_memory (auto_memory.h) marks the budgets it filled in.
      const json& raw = cfg.memory()["devices"][i];
      b.source = raw.is_object() && raw.contains("_budget_source") && raw["_budget_source"].is_string()
                     ? raw["_budget_source"].get<std::string>()
                     : "memory.devices[].budget";
    } else if (cfg.executor.device_budget > 0) {
      b.budget_bytes = cfg.executor.device_budget;
      b.source = "executor.device_budget";
    }
    out.push_back(b);
  }
  return out;
}

namespace {

// Note [Host tier need]: what each configured Wan model needs of the host tier, from the
// planner's model facts (scheduler/plan: the model's headers, never its weights) and its host
// plan (plan_host, card_plan.h), which `wanctl plan` and the job's disk floor use too:
// - the DiT of every expert in the run dtype stays in host memory when it fits; an A14B's
//   idle expert is held there between its switches;
// - below that, what does not fit is re-read from disk: at each expert switch (the cache
//   holds the active expert), or on every forward (not even one expert fits);
// - below the disk -> host staging window (4 of the largest block) the planner plans no job
//   of the model at all.
// The daemon starts with any of these (the pool is valid; a job's plan or its run fails, or
// runs at the disk's speed), so --check-config warns, naming the model, the need and the tier,
// and never refuses. A model directory that is not a Wan release (the fake test models) or
// cannot be read is skipped: the registry's own check reports those (Note [Check config]).
void host_tier_warnings(const DaemonConfig& cfg, std::vector<std::string>& w) {
  const memory::PoolConfig* pool = cfg.pool_config();
  if (!pool) return;
  namespace plan = sched::plan;
  const std::uint64_t host = pool->host_bytes;
  const std::string tier = "the host tier (memory.host.bytes" +
                           std::string(cfg.memory_mode == "auto" ? ", sized from this machine" : "") + ") " +
                           format_bytes(host);
  for (const auto& [name, dir] : cfg.models) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec) ||
        std::filesystem::exists(std::filesystem::path(dir) / "wand-fake-model.json", ec)) {
      continue;
    }
    plan::ModelShape m;
    plan::JobGeometry g;
    try {
      m = plan::model_shape_from_dir(dir, cfg.weights_of(name));
      g = plan::job_geometry(m, sched::JobSpec{});  // the model's default job (only its step split matters)
    } catch (const std::exception&) {
      continue;
    }
    std::uint64_t dit = 0;
    for (std::size_t e = 0; e < m.experts.size(); ++e) dit += m.expert_run_bytes(e);
    const std::string model = "models." + name + " (" + m.variant + ")";
    const bool fp8 = m.max_block_dequant_bytes() > 0;
    const std::string need = "its DiT needs " + format_bytes(dit) + " of host memory in " +
                             (fp8 ? "fp8 (weights_dtype " + m.weights_dtype + ": the large linear weights fp8, the rest bf16"
                                  : std::string("bf16 (") + (m.weights_dtype == "auto" ? "set weights_dtype \"fp8\" to halve it; " : "")) +
                             (fp8 ? "; " : "") +
                             (m.experts.size() >= 2 ? "both experts: the idle one is held there between switches"
                                                    : "one expert") +
                             "), umT5 another " + format_bytes(m.t5_bytes);
    const std::string fix = "set memory.host.bytes to at least " + format_bytes(dit) + " (" + format_bytes(dit + m.t5_bytes) +
                            " with umT5) where the machine has the RAM";
    plan::HostPlan h;
    try {
      h = plan::plan_host(m, g, host, plan::Calibration::defaults());
    } catch (const Error& e) {
      w.push_back(model + ": " + tier + " is too small to run any job of it: " + e.what() + "; " + need + "; " + fix);
      continue;
    }
    if (h.dit_in_host >= h.dit_bytes) continue;  // every expert stays in host memory
    const bool switch_reads = h.first_wait_bytes > 0;  // plan_host's switch case: the active expert fits
    w.push_back(model + ": " + tier + " is below what it needs: " + need + "; " +
                (switch_reads ? "the idle expert is not held, so each expert switch re-reads it from disk"
                              : "not even one expert fits, so every step re-reads its blocks from disk") +
                " (" + format_bytes(h.disk_bytes_per_job) +
                " per job; `wanctl plan` shows the disk floor in the job's time); " + fix);
  }
}

}  // namespace

std::vector<std::string> config_warnings(const DaemonConfig& cfg) {
  std::vector<std::string> w;
  host_tier_warnings(cfg, w);
  lora_warnings(cfg, w);
  const std::vector<CardBudget> cards = card_budgets(cfg);
  const std::uint64_t context = cfg.executor.context_bytes > 0
                                    ? cfg.executor.context_bytes
                                    : static_cast<std::uint64_t>(sched::plan::Calibration::defaults().context_bytes.value);
  const std::string ctx_src = cfg.executor.context_bytes > 0 ? "executor.context_bytes" : "the default context";
  for (std::size_t i = 0; i < cards.size(); ++i) {
    const CardBudget& c = cards[i];
    const std::string f = "memory.devices[" + std::to_string(i) + "] (device " + std::to_string(c.index) + ")";
    if (c.budget_bytes == 0) {
      if (c.backend == "cpu") continue;  // host memory standing in for a card (tests)
      w.push_back(f + ": a " + format_bytes(c.tier_bytes) +
                  " device tier and no card budget: the planner takes the tier for the whole card and a job's "
                  "activations are not checked or chunked; set the card's usable memory, e.g. \"budget\": \"23GiB\" "
                  "for a 24 GB card (memory.devices[].budget or executor.device_budget; the tier is a part of it, "
                  "Note [Card budget])");
      continue;
    }
    if (c.tier_bytes >= c.budget_bytes) {
      w.push_back(f + ": the device tier " + format_bytes(c.tier_bytes) + " is not smaller than the card budget " +
                  format_bytes(c.budget_bytes) + " (" + c.source +
                  "): the tier is a part of the budget; leave the activations room beside it (`wanctl plan` names "
                  "the tier a job needs)");
      continue;
    }
    const std::uint64_t fixed = context + c.tier_bytes;
    if (fixed >= c.budget_bytes || c.budget_bytes - fixed < kMinActivationRoom) {
      const std::uint64_t room = fixed >= c.budget_bytes ? 0 : c.budget_bytes - fixed;
      w.push_back(f + ": the device tier " + format_bytes(c.tier_bytes) + " leaves " +
                  (room == 0 ? std::string("no activation room") : "only " + format_bytes(room) + " of activation room") +
                  ": card budget " + format_bytes(c.budget_bytes) + " (" + c.source + ") - context " +
                  format_bytes(context) + " (" + ctx_src + ") - tier = " + format_bytes(room) +
                  ", shared by the non-block weights and the activations (an A14B step at 832x480 needs about 5 GiB, "
                  "at 1280x720 about 10.6 GiB); shrink the tier (`wanctl plan` names the size a job needs)");
    }
  }
  return w;
}

}  // namespace wand::daemon
