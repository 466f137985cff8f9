#include "daemon/plan_service.h"

#include "common/error.h"
#include "memory/pool_config.h"
#include "scheduler/plan/planner.h"

namespace wand::daemon {

namespace fs = std::filesystem;
using nlohmann::json;
namespace plan = sched::plan;

plan::MachineSpec machine_from_memory_config(const json& memory) {
  const memory::PoolConfig pc = memory::PoolConfig::from_json(memory);
  plan::MachineSpec mc;
  for (const auto& d : pc.devices) mc.devices.push_back({d.index, d.bytes});
  mc.host_bytes = pc.host_bytes;
  return mc;
}

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

plan::MachineSpec plan_machine(const DaemonConfig& cfg, std::string* budget_source) {
  plan::MachineSpec mc = machine_from_memory_config(cfg.memory);
  // Note [Plan card budgets]: the planner splits a whole-card budget itself (context,
  // non-block weights, slots, resident blocks, activations). The config's whole-card
  // number is executor.device_budget (the executor runs on the first device); the other
  // devices get the same headroom over their device tier. Without device_budget, each
  // device's memory.devices[].bytes is taken as its whole-card budget.
  if (cfg.executor.device_budget > 0 && !mc.devices.empty()) {
    const std::uint64_t first = mc.devices[0].budget_bytes;
    const std::uint64_t whole = cfg.executor.device_budget;
    for (auto& d : mc.devices) {
      const std::uint64_t tier = d.budget_bytes;  // whole - first + tier, never below 0
      d.budget_bytes = tier >= first ? whole + (tier - first) : (whole > first - tier ? whole - (first - tier) : 0);
      // The running daemon's device tier is that size, allocated whole at start (Note [Fixed
      // tier], scheduler/plan/card_plan.h): plan what it will do, not a tier of its own.
      d.tier_bytes = tier;
    }
    if (budget_source) {
      *budget_source = "executor.device_budget (" + format_bytes(cfg.executor.device_budget) + ") for device " +
                       std::to_string(mc.devices[0].index) +
                       "; other devices: the same headroom over their memory.devices[].bytes";
    }
  } else if (budget_source) {
    *budget_source = "memory.devices[].bytes taken as each card's whole budget (no executor.device_budget)";
  }
  return mc;
}

proto::PlanReport plan_report(const DaemonConfig& cfg, const sched::PipelineRegistry& registry,
                              const sched::JobSpec& spec) {
  proto::PlanReport r;
  r.available = false;
  if (cfg.memory.is_null()) {
    r.note = "no memory section configured: the planner needs the device and host budgets";
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
    std::string budget_source;
    plan::MachineSpec mc = plan_machine(cfg, &budget_source);
    if (mc.devices.empty()) {
      r.note = "the memory section lists no devices: nothing to plan on";
      return r;
    }
    const fs::path cal_file = calibration_path(cfg);
    bool have_cal = false;
    const plan::Calibration cal = plan_calibration(cfg, &have_cal);
    const plan::ModelShape shape = plan::model_shape_from_dir(model_dir);
    json j;
    if (mc.devices.size() == 1) {
      j = plan::plan_single_card(shape, spec, mc.devices[0], mc.host_bytes, cal).to_json(shape, cal);
    } else {
      j = plan::plan_multi(shape, {spec}, mc, cal).to_json(shape, cal, mc);
    }
    j["budget_source"] = budget_source;
    j["calibration_file"] = have_cal ? cal_file.string() : "";
    j["calibration_source"] = have_cal ? "file " + cal_file.string()
                                       : "defaults (H100 measurements; no " + cal_file.string() + ")";
    const memory::PoolConfig pc = memory::PoolConfig::from_json(cfg.memory);
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
