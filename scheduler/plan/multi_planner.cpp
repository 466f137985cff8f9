#include "scheduler/plan/multi_planner.h"

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace wand::sched::plan {

using nlohmann::json;

namespace {

const DeviceSpec* find_device(const MachineSpec& mc, int index) {
  for (const auto& d : mc.devices) {
    if (d.index == index) return &d;
  }
  return nullptr;
}

// Note [Multi-card model] at guidance 1.
constexpr const char* kNoCfgSplit =
    "guidance 1 on every step: the job has no unconditional branch, so a CFG split has nothing to put on the "
    "second card";

StrategyPrediction infeasible(StrategyPrediction sp, std::string why) {
  sp.feasible = false;
  sp.reason = std::move(why);
  return sp;
}

}  // namespace

json MachineSpec::to_json() const {
  json d = json::array();
  for (const auto& x : devices) d.push_back({{"index", x.index}, {"budget_bytes", x.budget_bytes}});
  return {{"devices", d}, {"host_bytes", host_bytes}};
}

StrategyPrediction evaluate_strategy(const ModelShape& m, const JobGeometry& g, const MachineSpec& mc,
                                     const Calibration& cal, const std::string& kind, int ranks,
                                     const std::vector<int>& devices) {
  // Note [Multi-card model].
  StrategyPrediction sp;
  CardWork w;
  int need = 1;
  int N = 1;
  w.branches = g.branches;  // Note [Guidance 1]: 1 when no step guides
  if (kind == "single") {
    sp.strategy = "single";
  } else if (kind == "cfg-parallel") {
    sp.strategy = kind;
    need = 2;
    w.branches = 1;
    if (g.branches < 2) return infeasible(sp, kNoCfgSplit);
  } else if (kind == "ulysses" || kind == "cfg-x-ulysses") {
    N = ranks;
    sp.strategy = kind + "-" + std::to_string(N);
    if (kind == "cfg-x-ulysses") {
      w.branches = 1;
      if (g.branches < 2) return infeasible(sp, kNoCfgSplit);
    }
    w.ranks = N;
    need = kind == "ulysses" ? N : 2 * N;
    if (N < 2) return infeasible(sp, "Ulysses needs at least 2 ranks, got " + std::to_string(N));
    if (m.num_heads % N != 0) {
      return infeasible(sp, "num_heads " + std::to_string(m.num_heads) + " is not divisible by " + std::to_string(N) +
                                " (Ulysses splits the heads across the ranks)");
    }
  } else {
    throw Error(ErrorCode::kBadRequest, "plan: unknown strategy '" + kind +
                                            "' (single, cfg-parallel, ulysses, cfg-x-ulysses)");
  }
  if (kind == "single") sp.devices = devices;  // named even when it cannot run
  if (static_cast<int>(devices.size()) < need) {
    return infeasible(sp, "needs " + std::to_string(need) + " cards, " + std::to_string(devices.size()) + " available");
  }
  if (N > 1) {
    const std::int64_t s_local = (g.tokens + N - 1) / N;
    const double a2a = static_cast<double>(s_local) * static_cast<double>(m.dim) * m.run_bytes * (N - 1) / N;
    w.comm_s_per_block = w.branches * 4.0 * a2a / (cal.interconnect_gbps.value * 1e9);
  }
  w.streaming_cards = need;
  std::vector<CardPlan> chosen;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<CardPlan> ok;
    std::string why;
    for (int idx : devices) {
      const DeviceSpec* d = find_device(mc, idx);
      if (!d) throw Error(ErrorCode::kBadRequest, "plan: no device " + std::to_string(idx) + " in the machine");
      CardPlan p = plan_card(m, g, *d, cal, w);
      if (p.feasible) {
        ok.push_back(p);
      } else {
        why += (why.empty() ? "" : "; ") + p.reason;
      }
    }
    if (static_cast<int>(ok.size()) < need) {
      return infeasible(sp, "only " + std::to_string(ok.size()) + " of " + std::to_string(devices.size()) +
                                " cards fit, needs " + std::to_string(need) + ": " + why);
    }
    std::stable_sort(ok.begin(), ok.end(), [](const CardPlan& a, const CardPlan& b) { return a.step_s < b.step_s; });
    ok.resize(static_cast<std::size_t>(need));
    chosen = ok;
    int streaming = 0;
    for (const auto& p : chosen) streaming += p.streaming() ? 1 : 0;
    streaming = std::max(1, streaming);
    if (streaming == w.streaming_cards) break;
    w.streaming_cards = streaming;
  }
  HostPlan host;
  try {
    host = plan_host(m, g, mc.host_bytes, cal);
  } catch (const Error& e) {
    return infeasible(sp, e.what());
  }
  sp.feasible = true;
  sp.devices.clear();
  double cold = 0;
  int cold_steps = 0;
  for (const auto& p : chosen) {
    sp.devices.push_back(p.device_index);
    sp.step_s = std::max(sp.step_s, p.step_s);
    sp.forward_s = std::max(sp.forward_s, p.forward_s);
    cold = std::max(cold, p.cold_step_s);
    cold_steps = std::max(cold_steps, p.cold_steps_per_job);
  }
  sp.cards = chosen;
  discount_device_residency(host, chosen);
  sp.times = job_times(m, g, host, cal, sp.step_s, cold, cold_steps);
  return sp;
}

json MultiPlan::to_json(const ModelShape& m, const Calibration& cal, const MachineSpec& mc) const {
  json rows = json::array();
  std::vector<CardPlan> all_cards;
  for (const auto& s : strategies) {
    rows.push_back(s.to_json());
    all_cards.insert(all_cards.end(), s.cards.begin(), s.cards.end());
  }
  json js = json::array();
  for (const auto& a : jobs) {
    json r = a.prediction.to_json();
    r["job"] = a.job;
    r["start_s"] = a.start_s;
    r["end_s"] = a.end_s;
    js.push_back(r);
  }
  json ex = json::array();
  for (const auto& [d, why] : excluded) ex.push_back({{"device", d}, {"reason", why}});
  return {{"version", 2},
          {"mode", mode},
          {"model", m.to_json()},
          {"job", geom.to_json()},
          {"machine", mc.to_json()},
          {"calibration", cal.to_json()},
          {"choice", choice.to_json(/*with_cards=*/true)},
          {"strategies", rows},
          {"jobs", js},
          {"excluded", ex},
          {"host", host.to_json()},
          {"makespan_s", makespan_s},
          {"jobs_per_hour", jobs_per_hour},
          {"notes", plan_notes(m, cal, all_cards)}};
}

MultiPlan plan_multi(const ModelShape& m, const std::vector<JobSpec>& queue, const MachineSpec& mc,
                     const Calibration& cal) {
  if (mc.devices.empty()) throw Error(ErrorCode::kConfig, "plan: no devices configured");
  if (queue.empty()) throw Error(ErrorCode::kBadRequest, "plan: empty job queue");
  MultiPlan out;
  out.geom = job_geometry(m, queue.front());
  out.host = plan_host(m, out.geom, mc.host_bytes, cal);  // throws kConfig
  std::vector<int> all;
  for (const auto& d : mc.devices) all.push_back(d.index);
  const int n = static_cast<int>(all.size());

  // Every strategy for the first job.
  for (int idx : all) {
    StrategyPrediction s = evaluate_strategy(m, out.geom, mc, cal, "single", 1, {idx});
    if (!s.feasible) out.excluded.emplace_back(idx, s.reason);
    out.strategies.push_back(s);
  }
  if (n >= 2) out.strategies.push_back(evaluate_strategy(m, out.geom, mc, cal, "cfg-parallel", 2, all));
  for (int N = 2; N <= n; ++N) out.strategies.push_back(evaluate_strategy(m, out.geom, mc, cal, "ulysses", N, all));
  for (int N = 2; 2 * N <= n; ++N) {
    out.strategies.push_back(evaluate_strategy(m, out.geom, mc, cal, "cfg-x-ulysses", N, all));
  }
  const StrategyPrediction* best = nullptr;
  std::string why;
  for (const auto& s : out.strategies) {
    if (!s.feasible) {
      why += (why.empty() ? "" : "; ") + s.strategy + ": " + s.reason;
      continue;
    }
    // Lowest step time; within 1 % the one with fewer cards.
    if (!best || s.step_s < best->step_s * 0.99 ||
        (s.step_s <= best->step_s * 1.01 && s.devices.size() < best->devices.size())) {
      best = &s;
    }
  }
  if (!best) throw Error(ErrorCode::kConfig, "plan: no card can run the job: " + why);

  if (queue.size() == 1) {
    out.mode = "latency";
    out.choice = *best;
    discount_device_residency(out.host, best->cards);
    out.jobs.push_back({0, *best, 0.0, best->times.job_s});
    out.makespan_s = best->times.job_s;
    out.jobs_per_hour = out.makespan_s > 0 ? 3600.0 / out.makespan_s : 0;
    return out;
  }

  // Throughput: job-parallel list scheduling over the cards, each job on one card.
  out.mode = "throughput";
  std::vector<double> avail(mc.devices.size(), 0.0);
  const int usable = n - static_cast<int>(out.excluded.size());
  const int concurrent = std::max(1, std::min<int>(usable, static_cast<int>(queue.size())));
  Calibration shared = cal;  // disk shared by the jobs that read it at once
  if (out.host.disk_bytes_per_job > 0) shared.disk_gbps.value = cal.disk_gbps.value / concurrent;
  for (std::size_t j = 0; j < queue.size(); ++j) {
    const JobGeometry gj = job_geometry(m, queue[j]);
    const HostPlan hj = plan_host(m, gj, mc.host_bytes, cal);
    JobAssignment a;
    a.job = j;
    a.prediction.strategy = "job-parallel";
    double best_end = std::numeric_limits<double>::infinity();
    std::string no_fit;
    for (std::size_t c = 0; c < mc.devices.size(); ++c) {
      CardWork w;
      w.streaming_cards = concurrent;  // every busy card may stream at once (worst case)
      const CardPlan p = plan_card(m, gj, mc.devices[c], cal, w);
      if (!p.feasible) {
        no_fit += (no_fit.empty() ? "" : "; ") + p.reason;
        continue;
      }
      HostPlan hc = hj;
      discount_device_residency(hc, {p});
      const JobTimes t = job_times(m, gj, hc, shared, p.step_s, p.cold_step_s, p.cold_steps_per_job);
      if (avail[c] + t.job_s < best_end) {
        best_end = avail[c] + t.job_s;
        a.prediction.feasible = true;
        a.prediction.devices = {p.device_index};
        a.prediction.cards = {p};
        a.prediction.step_s = p.step_s;
        a.prediction.forward_s = p.forward_s;
        a.prediction.times = t;
        a.start_s = avail[c];
        a.end_s = best_end;
      }
    }
    if (!a.prediction.feasible) {
      a.prediction.reason = "no card fits the job: " + no_fit;
    } else {
      for (std::size_t c = 0; c < mc.devices.size(); ++c) {
        if (mc.devices[c].index == a.prediction.devices[0]) {
          avail[c] = a.end_s;
        }
      }
      out.makespan_s = std::max(out.makespan_s, a.end_s);
    }
    out.jobs.push_back(a);
  }
  int done = 0;
  for (const auto& a : out.jobs) done += a.prediction.feasible ? 1 : 0;
  out.jobs_per_hour = out.makespan_s > 0 ? done * 3600.0 / out.makespan_s : 0;
  // The summary row: job-parallel over the cards used, with the first job's card plans.
  out.choice.strategy = "job-parallel";
  out.choice.feasible = done > 0;
  if (!out.choice.feasible) out.choice.reason = "no job fits any card";
  for (const auto& a : out.jobs) {
    if (!a.prediction.feasible) continue;
    const int d = a.prediction.devices[0];
    if (std::find(out.choice.devices.begin(), out.choice.devices.end(), d) != out.choice.devices.end()) continue;
    out.choice.devices.push_back(d);
    out.choice.cards.push_back(a.prediction.cards[0]);
    out.choice.step_s = std::max(out.choice.step_s, a.prediction.step_s);
    out.choice.forward_s = std::max(out.choice.forward_s, a.prediction.forward_s);
    if (out.choice.times.job_s < a.prediction.times.job_s) out.choice.times = a.prediction.times;
  }
  return out;
}

}  // namespace wand::sched::plan
