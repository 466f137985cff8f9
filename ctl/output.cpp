#include "ctl/output.h"

#include <algorithm>
#include <ctime>
#include <vector>

#include <sys/ioctl.h>
#include <unistd.h>

#include "common/error.h"
#include "ctl/exit_codes.h"

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
  std::fprintf(out, "state:     %s%s%s\n", j.state.c_str(), j.stage.empty() ? "" : (", " + j.stage).c_str(),
               j.cancel_requested && j.state == "running" ? " (cancelling)" : "");
  std::fprintf(out, "step:      %d/%d\n", j.step, j.total_steps);
  if (j.sec_per_step > 0) std::fprintf(out, "speed:     %.3f s/step\n", j.sec_per_step);
  if (j.state == "running" && j.eta_s > 0) std::fprintf(out, "eta:       %s\n", format_seconds(j.eta_s).c_str());
  std::fprintf(out, "model:     %s (%s)\n", j.model.c_str(), j.task.c_str());
  std::fprintf(out, "size:      %dx%d, %d frames, seed %llu, priority %d (requested)\n", j.width, j.height,
               j.frames, static_cast<unsigned long long>(j.seed), j.priority);
  if (j.video_width > 0) std::fprintf(out, "video:     %s\n", video_size(j).c_str());
  if (!j.ran_on.empty()) std::fprintf(out, "ran on:    %s\n", j.ran_on.c_str());
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

// Note [Tiers figures]: each column says where its figures come from: capacity is
// configured (the memory section; host and disk are reserved in full when wand starts), used,
// pinned, moved and GB/s are measured by the pool (GB/s: bytes moved in and out per second
// since the previous `tiers` call). Without a pool only the configured capacities exist.
void print_tiers(std::FILE* out, const proto::TiersReport& t) {
  auto bytes = [](const nlohmann::json& x, const char* key) -> std::string {
    return x.contains(key) && x[key].is_number() ? format_bytes(x[key].get<std::uint64_t>()) : "-";
  };
  std::fprintf(out, "%-10s %-7s %13s %12s %12s %12s %12s %8s\n", "TIER", "KIND", "CAPACITY(c)", "USED(m)",
               "PINNED(m)", "MOVED IN(m)", "MOVED OUT(m)", "GB/s(m)");
  std::vector<std::string> reserved;
  if (t.tiers.is_array()) {
    for (const auto& x : t.tiers) {
      const std::string kind = x.value("kind", std::string("?"));
      std::string gbps = "-";
      if (t.measured && x.contains("gbps") && x["gbps"].is_number()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", x["gbps"].get<double>());
        gbps = buf;
      }
      std::fprintf(out, "%-10s %-7s %13s %12s %12s %12s %12s %8s\n", x.value("name", std::string("?")).c_str(),
                   kind.c_str(), bytes(x, "bytes_capacity").c_str(), bytes(x, "bytes_used").c_str(),
                   bytes(x, "pinned_bytes").c_str(), bytes(x, "bytes_moved_in").c_str(),
                   bytes(x, "bytes_moved_out").c_str(), gbps.c_str());
      if (x.contains("allocator_reserved_bytes")) {
        std::fprintf(out, "%-10s LibTorch allocator: reserved %s, peak %s (m)\n", "",
                     bytes(x, "allocator_reserved_bytes").c_str(), bytes(x, "allocator_peak_reserved_bytes").c_str());
      }
      const std::string cap = bytes(x, "bytes_capacity");
      if (kind == "host") {
        const bool locked = x.value("page_locked", x.value("pinned", false));
        reserved.push_back("host tier " + cap + " of RAM" + (locked ? " (page-locked)" : " (pageable)"));
      } else if (kind == "disk") {
        const std::string where = x.value("path", x.value("dir", std::string()));
        reserved.push_back("disk spool " + cap + (where.empty() ? "" : " at " + where));
      }
    }
  }
  std::fprintf(out, "(c) configured, (m) measured%s\n", t.measured ? "; GB/s since the previous `tiers`" : ": not measured here");
  if (!reserved.empty()) {
    std::string line;
    for (const auto& r : reserved) line += (line.empty() ? "" : ", ") + r;
    std::fprintf(out, "%s at start: %s\n", t.measured ? "reserved" : "to be reserved", line.c_str());
  }
  std::fprintf(out, "source: %s%s\n", t.source.c_str(), t.measured ? " (measured)" : " (not measured)");
  if (!t.note.empty()) std::fprintf(out, "note: %s\n", t.note.c_str());
}

namespace {

using nlohmann::json;

std::string join_ints(const json& a) {
  std::string s;
  if (!a.is_array()) return "-";
  for (const auto& x : a) {
    if (!s.empty()) s += ",";
    s += x.is_number() ? std::to_string(x.get<long long>()) : "?";
  }
  return s.empty() ? "-" : s;
}

std::string join_bytes(const json& a) {
  std::string s;
  if (!a.is_array()) return "-";
  for (const auto& x : a) {
    if (!s.empty()) s += ",";
    s += x.is_number() ? format_bytes(x.get<std::uint64_t>()) : "?";
  }
  return s.empty() ? "-" : s;
}

std::string secs(const json& row, const char* key) {
  if (!row.contains(key) || !row[key].is_number()) return "-";
  char buf[32];
  double v = row[key].get<double>();
  std::snprintf(buf, sizeof buf, v < 0.01 ? "%.2g" : v < 10 ? "%.3f" : "%.1f", v);
  return buf;
}

std::string bytes_of(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? format_bytes(j[key].get<std::uint64_t>()) : "-";
}

constexpr std::size_t kPlanWidth = 100;  // `wanctl plan` wraps its text here

// Prints `text` wrapped at kPlanWidth: the first line after `first` (already counted in
// `first_used` columns), the others indented by `indent` spaces. Breaks at spaces only.
void print_wrapped(std::FILE* out, const std::string& first, const std::string& text, std::size_t indent) {
  std::string line = first;
  std::size_t col = first.size();
  std::size_t i = 0;
  bool line_empty = true;
  while (i < text.size()) {
    std::size_t j = text.find(' ', i);
    if (j == std::string::npos) j = text.size();
    const std::string word = text.substr(i, j - i);
    i = j + 1;
    if (word.empty()) continue;
    if (!line_empty && col + 1 + word.size() > kPlanWidth) {
      std::fprintf(out, "%s\n", line.c_str());
      line = std::string(indent, ' ');
      col = indent;
      line_empty = true;
    }
    if (!line_empty) {
      line += ' ';
      ++col;
    }
    line += word;
    col += word.size();
    line_empty = false;
  }
  std::fprintf(out, "%s\n", line.c_str());
}

// A reason that joins several cards' reasons with "; " (plan_multi): one card per line.
void print_reasons(std::FILE* out, const std::string& first, const std::string& reason, std::size_t indent) {
  std::size_t start = 0;
  bool head = true;
  while (start <= reason.size()) {
    std::size_t end = reason.find("; ", start);
    if (end == std::string::npos) end = reason.size();
    const std::string part = reason.substr(start, end - start);
    print_wrapped(out, head ? first : std::string(indent, ' '), part, indent + 2);
    head = false;
    if (end == reason.size()) break;
    start = end + 2;
  }
}

void print_strategy_row(std::FILE* out, const json& row, bool chosen) {
  const std::string name = row.value("strategy", std::string("?"));
  const std::string devs = join_ints(row.value("devices", json::array()));
  if (!row.value("feasible", false)) {
    char head[64];
    std::snprintf(head, sizeof head, "%s %-16s %-8s not possible: ", chosen ? "*" : " ", name.c_str(), devs.c_str());
    print_reasons(out, head, row.value("reason", std::string("?")), 4);
    return;
  }
  std::fprintf(out, "%s %-16s %-8s %8s %8s  %-22s %-6s %-9s %s\n", chosen ? "*" : " ", name.c_str(), devs.c_str(),
               secs(row, "step_s").c_str(), secs(row, "job_s").c_str(),
               join_bytes(row.value("peak_bytes", json::array())).c_str(),
               join_ints(row.value("prefetch_depth", json::array())).c_str(),
               join_ints(row.value("resident_blocks", json::array())).c_str(),
               row.value("bound", std::string("")).c_str());
}

}  // namespace

int plan_exit_code(const proto::PlanReport& p) { return p.available ? kExitOk : kExitNoPlan; }

namespace {

// Nothing fits (daemon/plan_service.cpp, Note [Fit advice]): each card's reason on its own
// lines, then what to change.
void print_no_fit(std::FILE* out, const json& j) {
  for (const auto& c : j.value("cards", json::array())) {
    const std::string head = "  device " + std::to_string(c.value("device", 0)) + ": ";
    if (c.value("fits", false)) {
      print_wrapped(out, head, "fits (budget " + bytes_of(c, "budget_bytes") + ", device tier " +
                                   bytes_of(c, "tier_bytes") + ")", 6);
    } else {
      print_reasons(out, head, c.value("reason", std::string("?")), 6);
    }
  }
  const json advice = j.value("advice", json::array());
  if (!advice.empty()) std::fprintf(out, "what to change:\n");
  for (const auto& a : advice) {
    if (a.is_string()) print_wrapped(out, "  - ", a.get<std::string>(), 4);
  }
  if (j.contains("budget_source") && j["budget_source"].is_string()) {
    print_reasons(out, "budgets: ", j["budget_source"].get<std::string>(), 2);
  }
}

}  // namespace

void print_plan(std::FILE* out, const proto::PlanReport& p) {
  if (!p.available) {
    print_wrapped(out, "no plan: ", p.note, 2);
    if (p.plan.is_object() && p.plan.contains("cards")) print_no_fit(out, p.plan);
    return;
  }
  const json& j = p.plan;
  if (!j.is_object() || !j.contains("choice")) {  // an unknown planner output: show it raw
    std::fprintf(out, "%s\n", j.dump(2).c_str());
    if (!p.note.empty()) std::fprintf(out, "note: %s\n", p.note.c_str());
    return;
  }
  const json model = j.value("model", json::object());
  const json job = j.value("job", json::object());
  std::fprintf(out, "plan v%d%s: %s %dx%dx%d, %d steps (%d high-noise), %lld tokens\n", j.value("version", 0),
               j.contains("mode") ? (" (" + j["mode"].get<std::string>() + ")").c_str() : "",
               model.value("variant", std::string("?")).c_str(), job.value("width", 0), job.value("height", 0),
               job.value("frames", 0), job.value("steps", 0), job.value("steps_high", 0),
               static_cast<long long>(job.value("tokens", 0LL)));
  std::fprintf(out, "  %-16s %-8s %8s %8s  %-22s %-6s %-9s %s\n", "STRATEGY", "DEVICES", "S/STEP", "S/JOB",
               "PEAK/CARD", "DEPTH", "RESIDENT", "BOUND");
  const json choice = j["choice"];
  const std::string chosen = choice.value("strategy", std::string()) + join_ints(choice.value("devices", json::array()));
  bool marked = false;
  for (const auto& row : j.value("strategies", json::array())) {
    const bool is = !marked && row.value("feasible", false) &&
                    row.value("strategy", std::string()) + join_ints(row.value("devices", json::array())) == chosen;
    marked = marked || is;
    print_strategy_row(out, row, is);
  }
  if (!marked) print_strategy_row(out, choice, true);
  const json jobs = j.value("jobs", json::array());
  if (j.value("mode", std::string()) == "throughput" && !jobs.empty()) {
    std::fprintf(out, "queue (job-parallel): %zu jobs, makespan %s s, %.1f jobs/hour\n", jobs.size(),
                 secs(j, "makespan_s").c_str(), j.value("jobs_per_hour", 0.0));
    for (const auto& a : jobs) {
      std::fprintf(out, "  job %-3d device %-6s start %8s end %8s  %s s/step\n", a.value("job", 0),
                   join_ints(a.value("devices", json::array())).c_str(), secs(a, "start_s").c_str(),
                   secs(a, "end_s").c_str(), secs(a, "step_s").c_str());
    }
  }
  for (const auto& c : choice.value("cards", json::array())) {
    if (!c.value("feasible", false)) continue;
    const json pk = c.value("peak", json::object());
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "peak %s of %s = context %s + non-block %s + slots %s + resident %s + activations %s; "
                  "prefetch %d, %d blocks resident, chunk %s, PCIe %.1f GB/s, forward %s s",
                  bytes_of(pk, "total").c_str(), bytes_of(c, "budget_bytes").c_str(), bytes_of(pk, "context").c_str(),
                  bytes_of(pk, "non_block_weights").c_str(), bytes_of(pk, "weight_slots").c_str(),
                  bytes_of(pk, "resident_blocks").c_str(), bytes_of(pk, "activations").c_str(),
                  c.value("prefetch_depth", 0), c.value("resident_blocks", 0),
                  c.value("chunk_tokens", 0) > 0 ? std::to_string(c.value("chunk_tokens", 0)).c_str() : "none",
                  c.value("pcie_gbps_effective", 0.0), secs(c, "forward_s").c_str());
    print_wrapped(out, "device " + std::to_string(c.value("device", 0)) + ": ", buf, 4);
  }
  if (choice.contains("times")) {
    const json t = choice["times"];
    std::fprintf(out, "job: umT5 %s s + steps %s s (disk floor %s s) + VAE %s s = %s s\n", secs(t, "t5_s").c_str(),
                 secs(t, "steps_s").c_str(), secs(t, "disk_floor_s").c_str(), secs(t, "vae_s").c_str(),
                 secs(t, "job_s").c_str());
  }
  if (j.contains("host")) {
    const json h = j["host"];
    std::fprintf(out, "host: %s of %s (DiT %s of %s, umT5 %s), disk per job %s\n", bytes_of(h, "total").c_str(),
                 bytes_of(h, "budget_bytes").c_str(), bytes_of(h, "dit_in_host").c_str(),
                 bytes_of(h, "dit_bytes").c_str(), h.value("t5_in_host", false) ? "in host" : "from disk",
                 bytes_of(h, "disk_bytes_per_job").c_str());
  }
  // Where the numbers come from.
  int defaults = 0, from_file = 0;
  std::string unmeasured;
  const json cal = j.value("calibration", json::object());
  for (const auto& [k, v] : cal.items()) {
    if (!v.is_object() || !v.contains("source")) continue;
    (v["source"] == "default" ? defaults : from_file)++;
    if (!v.value("measured", true)) unmeasured += (unmeasured.empty() ? "" : ", ") + k;
  }
  std::fprintf(out, "sources: %s; %d figures default, %d from a file%s%s\n",
               j.value("calibration_source", std::string("calibration")).c_str(), defaults, from_file,
               unmeasured.empty() ? "" : "; placeholders (not measured): ", unmeasured.c_str());
  if (j.contains("budget_source") && j["budget_source"].is_string()) {
    print_reasons(out, "budgets: ", j["budget_source"].get<std::string>(), 2);
  }
  for (const auto& n : j.value("notes", json::array())) {
    if (n.is_string()) print_wrapped(out, "note: ", n.get<std::string>(), 2);
  }
  if (!p.note.empty()) print_wrapped(out, "note: ", p.note, 2);
}

// Note [Models table]: each column is as wide as its longest cell (the header included), two
// spaces apart, so a long name or variant moves the next columns instead of running into them;
// SIZES holds one fact per line ("WxH multiples of 16", then "default 1280x720x81" on a
// continuation line), which keeps the table about 80 columns wide for the release models
// (before, "WxH multiples of 16, default 1280x720x81" overflowed its 34 columns into DIR).
// DIR is the last column (paths have any length) and only shown when the daemon sent one
// (admins: users see no server paths). A model whose configs could not be read gets "?" and
// its error on the lines below its row, wrapped at 100 columns.
void print_models(std::FILE* out, const proto::ModelList& m) {
  struct Row {
    std::vector<std::string> cells;   // NAME PIPELINE VARIANT TASKS SIZES(first line) DIR
    std::vector<std::string> more;    // SIZES continuation lines
    std::string error;
  };
  const std::vector<std::string> header = {"NAME", "PIPELINE", "VARIANT", "TASKS", "SIZES", "DIR"};
  bool dirs = false;
  std::vector<Row> rows;
  for (const auto& x : m.models) {
    Row r;
    std::string tasks;
    for (const auto& t : x.tasks) tasks += (tasks.empty() ? "" : ",") + t;
    std::vector<std::string> sizes;
    if (x.size_multiple > 0) sizes.push_back("WxH multiples of " + std::to_string(x.size_multiple));
    if (x.default_width > 0) {
      sizes.push_back("default " + std::to_string(x.default_width) + "x" + std::to_string(x.default_height) + "x" +
                      std::to_string(x.default_frames));
    }
    if (!x.error.empty()) {
      sizes = {"?"};
      r.error = x.error;
    }
    if (sizes.empty()) sizes.push_back("-");
    r.cells = {x.name, x.pipeline, x.variant.empty() ? "-" : x.variant, tasks.empty() ? "-" : tasks, sizes[0], x.dir};
    r.more.assign(sizes.begin() + 1, sizes.end());
    dirs = dirs || !x.dir.empty();
    rows.push_back(std::move(r));
  }
  const std::size_t ncols = dirs ? header.size() : header.size() - 1;
  std::vector<std::size_t> width(ncols, 0);
  for (std::size_t c = 0; c < ncols; ++c) width[c] = header[c].size();
  for (const Row& r : rows) {
    for (std::size_t c = 0; c < ncols; ++c) width[c] = std::max(width[c], r.cells[c].size());
    for (const auto& s : r.more) width[4] = std::max(width[4], s.size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t c = 0; c < ncols; ++c) {
      s += cells[c];
      if (c + 1 < ncols) s += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    std::fprintf(out, "%s\n", s.c_str());
  };
  line(header);
  for (const Row& r : rows) {
    line(r.cells);
    for (const auto& s : r.more) {
      std::vector<std::string> cont(header.size());
      cont[4] = s;
      line(cont);
    }
    if (!r.error.empty()) print_wrapped(out, "  error: ", r.error, 4);
  }
  bool i2v = false;
  for (const auto& x : m.models) {
    for (const auto& t : x.tasks) i2v = i2v || t == "i2v";
  }
  std::fprintf(out, "frames are 4n + 1%s\n",
               i2v ? "; with --image, WxH is the area and the video follows the image's aspect" : "");
  for (const auto& x : m.models) {
    if (x.default_loras.empty()) continue;
    std::string d;
    for (const auto& l : x.default_loras) d += (d.empty() ? "" : ", ") + l;
    std::fprintf(out, "%s default LoRAs: %s\n", x.name.c_str(), d.c_str());
  }
  if (m.loras.empty()) return;
  std::fprintf(out, "\nLoRAs (--lora NAME[:STRENGTH][@high|@low]):\n");
  for (const auto& l : m.loras) {
    std::string line = "  " + l.name;
    if (!l.error.empty()) {
      line += "  ?  " + l.error;
    } else {
      line += "  " + l.layout + "  " + (l.rank > 0 ? "rank " + std::to_string(l.rank) : std::string("deltas only")) +
              "  " + std::to_string(l.tensors) + " tensors  " + format_bytes(l.bytes);
    }
    if (!l.file.empty()) line += "  " + l.file;
    std::fprintf(out, "%s\n", line.c_str());
  }
}

std::string video_size(const proto::JobInfo& j) {
  if (j.video_width <= 0) return "";
  return std::to_string(j.video_width) + "x" + std::to_string(j.video_height) + ", " +
         std::to_string(j.video_frames) + " frames";
}

std::string job_line(const proto::JobInfo& j) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s %s step %d/%d", j.id.c_str(), j.state.c_str(), j.step, j.total_steps);
  std::string s = buf;
  if (!j.stage.empty()) s += " " + j.stage;
  if (j.sec_per_step > 0) {
    std::snprintf(buf, sizeof buf, " %.3f s/step", j.sec_per_step);
    s += buf;
  }
  if (j.state == "running" && j.eta_s > 0) s += " eta " + format_seconds(j.eta_s);
  if (!j.ran_on.empty()) s += " on " + j.ran_on;
  if (!j.error.empty()) s += " error: " + j.error;
  return s;
}

std::string event_line(const proto::JobEvent& e) { return job_line(e.job); }

// Note [Piped progress]: `generate` with stderr not a terminal (a log file, a pipe, systemd-run,
// CI) cannot redraw a line, so it writes one plain line (job_line, no "\r" and no escape
// sequence) each time the job's state, stage or step changes: a log shows the job move at
// once, not only at the end. Events that change only the speed or the ETA print nothing.
std::string ProgressLog::next(const proto::JobInfo& j) {
  const std::string key = j.state + "|" + j.stage + "|" + std::to_string(j.step) + "/" + std::to_string(j.total_steps);
  if (key == last_) return "";
  last_ = key;
  return job_line(j) + "\n";
}

int terminal_columns(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

// Note [Progress line]: "ID [BAR] K/N STAGE S s/step eta T". The bar's cells depend on the
// terminal's width only: the room left after the id, the steps and kTailRoom columns for
// the tail ("denoising 99.99 s/step eta 59m59s"), at most 30 cells, none below 10. So the
// bar keeps its size through the job (a long stage such as "switching expert (low-noise)"
// does not shrink it, which would make the bar look as if it went back), and K is padded to
// N's digits so the tail does not move. A tail longer than its room loses " s/step" first,
// then " eta T", then the end of the stage; the line is never longer than columns - 1 (the
// last column would wrap on some terminals).
namespace {
constexpr int kTailRoom = 33;
}  // namespace

std::string progress_line(const proto::JobInfo& j, int columns) {
  const int width = std::max(columns - 1, 1);
  const std::string total = std::to_string(j.total_steps);
  std::string steps = std::to_string(j.step);
  if (steps.size() < total.size()) steps.insert(0, total.size() - steps.size(), ' ');
  steps += "/" + total;
  std::string line = j.id + " ";
  const int bar_cells = std::min(30, width - static_cast<int>(line.size() + 3 + steps.size() + 1) - kTailRoom);
  if (bar_cells >= 10) {
    const int filled = j.total_steps > 0 ? bar_cells * std::clamp(j.step, 0, j.total_steps) / j.total_steps : 0;
    line += "[" + std::string(filled, '#') + std::string(bar_cells - filled, '.') + "] ";
  }
  line += steps;
  const std::string stage = j.state == "running" && !j.stage.empty() ? j.stage : j.state;
  std::string speed, eta;
  if (j.sec_per_step > 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.2f s/step", j.sec_per_step);
    speed = buf;
  }
  if (j.state == "running" && j.eta_s > 0) eta = " eta " + format_seconds(j.eta_s);
  const std::size_t room = static_cast<std::size_t>(width) > line.size() + 1 ? width - line.size() - 1 : 0;
  std::string tail = stage + speed + eta;
  if (tail.size() > room) tail = stage + eta;
  if (tail.size() > room) tail = stage;
  if (tail.size() > room) tail.resize(room);
  if (!tail.empty()) line += " " + tail;
  if (static_cast<int>(line.size()) > width) line.resize(static_cast<std::size_t>(width));
  while (line.size() > 1 && line.back() == ' ') line.pop_back();
  return line;
}

// Note [Progress redraw]: "\r" + line + "\033[K" (erase to the end of the row) replaces the
// line drawn before, of any length, as long as it still sits on one row. When the terminal
// is made narrower than that line, the terminal either reflows it onto two rows (tmux,
// VTE, kitty: "\r" would then return to the second row and leave the first part of the
// old line above) or cuts it (xterm). Which one is not known, so the drawer does not move
// the cursor up (that could erase the user's own output on a terminal that cut the line):
// it ends the old line with "\n" and draws below. The old line stays whole, as a line of
// history, and nothing of it is left on the row being redrawn.
std::string ProgressDrawer::redraw(const proto::JobInfo& j, int columns) {
  const std::string line = progress_line(j, columns);
  std::string out;
  if (last_len_ > 0 && columns > 0 && last_len_ >= static_cast<std::size_t>(columns)) out += "\n";
  out += "\r" + line + "\033[K";
  last_len_ = std::max<std::size_t>(line.size(), 1);
  return out;
}

}  // namespace wand::ctl
