#include "daemon/plan_service.h"

#include "common/error.h"
#include "memory/pool_config.h"
#include "scheduler/plan/fit_advice.h"
#include "scheduler/plan/planner.h"

namespace wand::daemon {

namespace fs = std::filesystem;
using nlohmann::json;
namespace plan = sched::plan;

fs::path calibration_path(const DaemonConfig& cfg) { return fs::path(cfg.state_dir) / "calibration.json"; }

plan::Calibration plan_calibration(const DaemonConfig& cfg, bool* from_file) {
  const fs::path cal_file = calibration_path(cfg);
  std::error_code ec;
  const bool have_cal = fs::exists(cal_file, ec);
  if (from_file) *from_file = have_cal;
  plan::Calibration cal = have_cal ? plan::Calibration::from_file(cal_file) : plan::Calibration::defaults();
  if (cfg.executor.context_bytes > 0) {
    cal.context_bytes.value = static_cast<double>(cfg.executor.context_bytes);
    cal.context_bytes.source = "config executor.context_bytes";
    cal.context_bytes.ref.clear();
  }
  return cal;
}

PlanMachine plan_machine(const DaemonConfig& cfg) {
  PlanMachine out;
  const memory::PoolConfig* pool = cfg.pool_config();
  if (!pool) return out;
  out.cards = card_budgets(cfg);  // Note [Card budget]: the one formula
  plan::MachineSpec& mc = out.machine;
  mc.host_bytes = pool->host_bytes;
  // Note [Plan card budgets]: the planner splits a card's whole budget itself (context,
  // non-block weights, slots, resident blocks, activations). The budget is the one of Note
  // [Card budget] (config.h; the executor checks the same number), and the device tier is
  // memory.devices[].bytes, allocated whole at start (Note [Fixed tier],
  // scheduler/plan/card_plan.h): the plan is what the running daemon will do, not a tier of
  // its own. A card without a known budget is planned with its tier taken as the whole card
  // (all the planner knows; `wand --check-config` warns about it, and the text says so).
  std::vector<std::pair<std::string, std::string>> groups;  // what -> "0,1,..." (cards saying the same)
  for (const CardBudget& c : out.cards) {
    plan::DeviceSpec d;
    d.index = c.index;
    std::string what;
    if (c.budget_bytes > 0) {
      d.budget_bytes = c.budget_bytes;
      d.tier_bytes = c.tier_bytes;
      what = format_bytes(c.budget_bytes) + " card budget (" + c.source + "), device tier " + format_bytes(c.tier_bytes);
    } else {
      d.budget_bytes = c.tier_bytes;
      d.tier_bytes = 0;
      what = "no card budget configured: the device tier " + format_bytes(c.tier_bytes) +
             " taken as the whole card (set memory.devices[].budget)";
    }
    mc.devices.push_back(d);
    bool found = false;
    for (auto& [w, devs] : groups) {
      if (w == what) {
        devs += "," + std::to_string(c.index);
        found = true;
      }
    }
    if (!found) groups.emplace_back(what, std::to_string(c.index));
  }
  std::string text;
  for (const auto& [what, devs] : groups) {
    text += (text.empty() ? "" : "; ") + std::string(devs.find(',') == std::string::npos ? "device " : "devices ") +
            devs + ": " + what;
  }
  out.budget_source = text;
  return out;
}

proto::PlanReport plan_report(const DaemonConfig& cfg, const sched::PipelineRegistry& registry,
                              const sched::JobSpec& spec) {
  return plan_report(cfg, plan_machine(cfg), registry, spec);
}

proto::PlanReport plan_report(const DaemonConfig& cfg, const PlanMachine& machine,
                              const sched::PipelineRegistry& registry, const sched::JobSpec& spec) {
  proto::PlanReport r;
  r.available = false;
  const memory::PoolConfig* pool = cfg.pool_config();
  if (!pool) {
    r.note = cfg.memory_mode == "off" ? "\"memory\": \"off\": no pool, models run resident (nothing to plan)"
                                      : "no memory pool: the planner needs the device and host budgets";
    return r;
  }
  fs::path model_dir;
  for (const auto& m : registry.models()) {
    if (m.name == spec.model) model_dir = m.dir;
  }
  if (model_dir.empty()) {
    r.note = "unknown model '" + spec.model + "'";
    return r;
  }
  try {
    const std::string& budget_source = machine.budget_source;
    const plan::MachineSpec& mc = machine.machine;
    if (mc.devices.empty()) {
      r.note = cfg.memory_mode == "auto" ? "no GPU on this machine (the auto memory section has no device tier): "
                                           "models run resident, nothing to plan on"
                                         : "the memory section lists no devices: nothing to plan on";
      return r;
    }
    const fs::path cal_file = calibration_path(cfg);
    bool have_cal = false;
    const plan::Calibration cal = plan_calibration(cfg, &have_cal);
    const plan::ModelShape shape = plan::model_shape_from_dir(model_dir, cfg.weights_of(spec.model));
    json j;
    try {
      if (mc.devices.size() == 1) {
        j = plan::plan_single_card(shape, spec, mc.devices[0], mc.host_bytes, cal).to_json(shape, cal);
      } else {
        j = plan::plan_multi(shape, {spec}, mc, cal).to_json(shape, cal, mc);
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kConfig) throw;
      // Nothing fits: what to change (Note [Fit advice], scheduler/plan/fit_advice.h), per card.
      const plan::FitAdvice advice = plan::advise_fit(shape, spec, mc, cal);
      bool any_card_fails = false;
      for (const auto& c : advice.cards) any_card_fails = any_card_fails || !c.fits;
      if (!any_card_fails) throw;  // not a card's budget (e.g. the host's): the message says
      const plan::JobGeometry g = plan::job_geometry(shape, spec);
      r.available = false;
      r.note = shape.variant + " " + std::to_string(g.width) + "x" + std::to_string(g.height) + "x" +
               std::to_string(g.frames) + " fits no card as configured";
      r.plan = advice.to_json();
      r.plan["fits"] = false;
      r.plan["model"] = shape.to_json();
      r.plan["job"] = g.to_json();
      r.plan["budget_source"] = budget_source;
      r.plan["planner_message"] = e.what();
      return r;
    }
    j["fits"] = true;
    j["budget_source"] = budget_source;
    j["calibration_file"] = have_cal ? cal_file.string() : "";
    j["calibration_source"] = have_cal ? "file " + cal_file.string()
                                       : "defaults (H100 measurements; no " + cal_file.string() + ")";
    const memory::PoolConfig& pc = *pool;
    if (pc.disk) j["disk"] = {{"dir", pc.disk->dir}, {"bytes", pc.disk->bytes}};
    // An fp32 release streamed from disk needs the repacked bf16 copy in the disk tier.
    bool fp32 = false;
    for (const auto& e : shape.experts) fp32 = fp32 || e.stored_dtype != "BF16";
    const auto disk_per_job = j["host"].value("disk_bytes_per_job", std::uint64_t{0});
    if (fp32 && disk_per_job > 0 && !pc.disk) {
      j["notes"].push_back("the checkpoint is not bf16 and the host tier cannot hold the experts: a disk tier is "
                           "needed for the repacked bf16 copy");
    }
    r.available = true;
    r.plan = std::move(j);
    r.note = have_cal ? "" : "calibration: defaults (measured on one H100); write " + cal_file.string() + " to override";
  } catch (const Error& e) {
    r.available = false;
    r.note = std::string("cannot plan: ") + e.what();
  } catch (const std::exception& e) {
    r.available = false;
    r.note = std::string("cannot plan: ") + e.what();
  }
  return r;
}

}  // namespace wand::daemon
