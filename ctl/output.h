// Human-readable printing for wanctl (tables, job details, the progress bar).
// --json output bypasses this: commands print the response JSON instead.
#pragma once

#include <cstdio>
#include <string>

#include "proto/responses.h"

namespace wand::ctl {

void print_job_table(std::FILE* out, const proto::JobList& jobs);
void print_job(std::FILE* out, const proto::JobInfo& job);
void print_tiers(std::FILE* out, const proto::TiersReport& t);
// `wanctl plan`: the strategies, each card's peak, and when nothing fits each card's reason and
// what to change (the tier size to set, the strategy that then fits); lines wrapped at 100
// columns, one card per line.
void print_plan(std::FILE* out, const proto::PlanReport& p);
// Exit status of `wanctl plan` (text or --json): kExitOk with a plan, kExitNoPlan without.
int plan_exit_code(const proto::PlanReport& p);
// `wanctl models`: columns as wide as their cells, sizes one per line (Note [Models table]).
void print_models(std::FILE* out, const proto::ModelList& m);
// One line for a job ("j-3 running step 4/20 denoising 0.810 s/step eta 13s"), no newline.
std::string job_line(const proto::JobInfo& job);
// One line for a watch event: job_line of its job.
std::string event_line(const proto::JobEvent& e);
// The progress of a job as plain log lines, for a stderr that is not a terminal (Note [Piped
// progress]): next() gives job_line + "\n" when the state, stage or step changed since the
// line it gave last, else "".
class ProgressLog {
 public:
  std::string next(const proto::JobInfo& job);

 private:
  std::string last_;  // state|stage|step/total of the last line
};
// The progress line of a job ("j-3 [#####.....]  4/20 denoising 0.81 s/step eta 13s"),
// never longer than columns - 1 characters, so that "\r" redraws it in place at any
// terminal width. Note [Progress line]: the bar's width depends on the width only (not
// on the stage), a narrow line drops s/step, then the ETA, then cuts the stage.
std::string progress_line(const proto::JobInfo& job, int columns);
// Draws progress lines in place on one terminal (Note [Progress redraw]).
class ProgressDrawer {
 public:
  // The bytes that replace the line drawn last with job's line: "\r" LINE "\033[K",
  // preceded by "\n" when the terminal became narrower than the line drawn last.
  std::string redraw(const proto::JobInfo& job, int columns);
  // The cursor is on a fresh line again (after a newline or a message): nothing to replace.
  void reset() { last_len_ = 0; }
  bool drawn() const { return last_len_ > 0; }

 private:
  std::size_t last_len_ = 0;
};
// The terminal's width on fd (TIOCGWINSZ; 80 when unknown), read at each redraw.
int terminal_columns(int fd);
// "832x480, 81 frames" once the job reported its video's real size, else "".
std::string video_size(const proto::JobInfo& job);
std::string format_seconds(double s);

}  // namespace wand::ctl
