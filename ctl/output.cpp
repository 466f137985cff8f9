#include "ctl/output.h"

#include <ctime>

#include "common/error.h"

namespace wand::ctl {

std::string format_seconds(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  }
  return buf;
}

namespace {
std::string shorten(const std::string& s, std::size_t n) {
  return s.size() <= n ? s : s.substr(0, n - 3) + "...";
}
std::string when(double t) {
  if (t <= 0) return "-";
  std::time_t tt = static_cast<std::time_t>(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&tt));
  return buf;
}
}  // namespace

void print_job_table(std::FILE* out, const proto::JobList& jobs) {
  std::fprintf(out, "%-8s %-10s %-9s %-12s %-14s %-6s %s\n", "ID", "STATE", "STEP", "MODEL", "SIZE",
               "UID", "PROMPT");
  for (const auto& j : jobs.jobs) {
    char step[32], size[32];
    std::snprintf(step, sizeof step, "%d/%d", j.step, j.total_steps);
    std::snprintf(size, sizeof size, "%dx%dx%d", j.width, j.height, j.frames);
    std::fprintf(out, "%-8s %-10s %-9s %-12s %-14s %-6u %s\n", j.id.c_str(), j.state.c_str(), step,
                 shorten(j.model, 12).c_str(), size, j.owner_uid, shorten(j.prompt, 40).c_str());
  }
}

void print_job(std::FILE* out, const proto::JobInfo& j) {
  std::fprintf(out, "id:        %s\n", j.id.c_str());
  std::fprintf(out, "state:     %s%s\n", j.state.c_str(), j.cancel_requested && j.state == "running" ? " (cancelling)" : "");
  std::fprintf(out, "step:      %d/%d\n", j.step, j.total_steps);
  if (j.sec_per_step > 0) std::fprintf(out, "speed:     %.3f s/step\n", j.sec_per_step);
  if (j.state == "running" && j.eta_s > 0) std::fprintf(out, "eta:       %s\n", format_seconds(j.eta_s).c_str());
  std::fprintf(out, "model:     %s (%s)\n", j.model.c_str(), j.task.c_str());
  std::fprintf(out, "size:      %dx%d, %d frames, seed %llu, priority %d\n", j.width, j.height,
               j.frames, static_cast<unsigned long long>(j.seed), j.priority);
  std::fprintf(out, "prompt:    %s\n", j.prompt.c_str());
  std::fprintf(out, "owner uid: %u\n", j.owner_uid);
  std::fprintf(out, "created:   %s\n", when(j.created_at).c_str());
  std::fprintf(out, "started:   %s\n", when(j.started_at).c_str());
  std::fprintf(out, "finished:  %s\n", when(j.finished_at).c_str());
  if (j.resumed_from_step >= 0) std::fprintf(out, "resumed:   from step %d\n", j.resumed_from_step);
  if (!j.error.empty()) std::fprintf(out, "error:     %s\n", j.error.c_str());
  if (j.result_bytes) {
    std::fprintf(out, "result:    %s, %s (wanctl fetch %s -o FILE)\n", j.result_format.c_str(),
                 format_bytes(j.result_bytes).c_str(), j.id.c_str());
  }
}

void print_tiers(std::FILE* out, const proto::TiersReport& t) {
  std::fprintf(out, "%-10s %-8s %12s %12s\n", "TIER", "KIND", "CAPACITY", "USED");
  if (t.tiers.is_array()) {
    for (const auto& x : t.tiers) {
      std::string used = x.contains("bytes_used") && x["bytes_used"].is_number()
                             ? format_bytes(x["bytes_used"].get<std::uint64_t>())
                             : "-";
      std::uint64_t cap = x.value("bytes_capacity", std::uint64_t{0});
      std::fprintf(out, "%-10s %-8s %12s %12s\n", x.value("name", std::string("?")).c_str(),
                   x.value("kind", std::string("?")).c_str(), format_bytes(cap).c_str(), used.c_str());
    }
  }
  std::fprintf(out, "source: %s%s\n", t.source.c_str(), t.measured ? " (measured)" : " (not measured)");
  if (!t.note.empty()) std::fprintf(out, "note: %s\n", t.note.c_str());
}

void print_plan(std::FILE* out, const proto::PlanReport& p) {
  if (!p.available) {
    std::fprintf(out, "no plan: %s\n", p.note.c_str());
    return;
  }
  std::fprintf(out, "%s\n", p.plan.dump(2).c_str());
  if (!p.note.empty()) std::fprintf(out, "note: %s\n", p.note.c_str());
}

void print_models(std::FILE* out, const proto::ModelList& m) {
  std::fprintf(out, "%-16s %-10s %s\n", "NAME", "PIPELINE", "DIR");
  for (const auto& x : m.models) {
    std::fprintf(out, "%-16s %-10s %s\n", x.name.c_str(), x.pipeline.c_str(), x.dir.c_str());
  }
}

std::string event_line(const proto::JobEvent& e) {
  const auto& j = e.job;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s %s step %d/%d", j.id.c_str(), j.state.c_str(), j.step, j.total_steps);
  std::string s = buf;
  if (j.sec_per_step > 0) {
    std::snprintf(buf, sizeof buf, " %.3f s/step", j.sec_per_step);
    s += buf;
  }
  if (j.state == "running" && j.eta_s > 0) s += " eta " + format_seconds(j.eta_s);
  if (!j.error.empty()) s += " error: " + j.error;
  return s;
}

void draw_progress(std::FILE* tty, const proto::JobInfo& j) {
  constexpr int kWidth = 30;
  int filled = j.total_steps > 0 ? kWidth * j.step / j.total_steps : 0;
  std::string bar(filled, '#');
  bar += std::string(kWidth - filled, '.');
  std::string tail = j.state;
  if (j.sec_per_step > 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.2f s/step", j.sec_per_step);
    tail += buf;
  }
  if (j.state == "running" && j.eta_s > 0) tail += " eta " + format_seconds(j.eta_s);
  std::fprintf(tty, "\r%s [%s] %d/%d %s\033[K", j.id.c_str(), bar.c_str(), j.step, j.total_steps,
               tail.c_str());
  std::fflush(tty);
}

}  // namespace wand::ctl
