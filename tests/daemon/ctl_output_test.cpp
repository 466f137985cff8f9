// wanctl's human output (ctl/output.h): the progress line fits any terminal width and
// names the job's stage; status shows where a job ran and its video's real size.
#include <gtest/gtest.h>

#include "ctl/output.h"

#include <string>
#include <vector>

namespace wand::ctl {
namespace {

proto::JobInfo running_job() {
  proto::JobInfo j;
  j.id = "j-10";
  j.state = "running";
  j.stage = "switching expert (low-noise)";
  j.step = 20;
  j.total_steps = 40;
  j.sec_per_step = 12.25;
  j.eta_s = 245;
  return j;
}

TEST(WanctlProgress, TheLineFitsEveryTerminalWidthSoItRedrawsInPlace) {
  const proto::JobInfo j = running_job();
  for (int cols = 1; cols <= 240; ++cols) {
    const std::string line = progress_line(j, cols);
    EXPECT_LE(line.size(), static_cast<std::size_t>(std::max(cols - 1, 1))) << "columns " << cols << ": " << line;
    EXPECT_EQ(line.find('\n'), std::string::npos);
  }
  const std::string wide = progress_line(j, 200);
  EXPECT_NE(wide.find("[###############...............] 20/40"), std::string::npos) << wide;
  EXPECT_NE(wide.find("switching expert (low-noise) 12.25 s/step eta 4m05s"), std::string::npos) << wide;
  const std::string narrow = progress_line(j, 40);  // no room for a bar: the figures stay
  EXPECT_EQ(narrow.find('['), std::string::npos) << narrow;
  EXPECT_EQ(narrow.rfind("j-10 20/40 switching", 0), 0u) << narrow;
}

TEST(WanctlProgress, QueuedAndLoadingJobsSayWhatTheyWaitFor) {
  proto::JobInfo j = running_job();
  j.stage = "loading";
  j.step = 0;
  j.sec_per_step = 0;
  j.eta_s = 0;
  EXPECT_NE(progress_line(j, 80).find("0/40 loading"), std::string::npos) << progress_line(j, 80);
  j.state = "queued";
  j.stage.clear();
  EXPECT_NE(progress_line(j, 80).find("0/40 queued"), std::string::npos) << progress_line(j, 80);
}

// The bar of a line: where '[' is and how many cells it has ("" when there is none).
std::string bar_of(const std::string& line) {
  const auto open = line.find('[');
  const auto close = line.find(']');
  if (open == std::string::npos || close == std::string::npos) return "";
  return std::to_string(open) + ":" + std::to_string(close - open - 1);
}

const char* const kStages[] = {"loading", "encoding", "denoising", "switching expert (low-noise)", "decoding",
                               "writing"};

// Walk-through 2026-12-07 (80 columns): the bar shrank from 30 to 19 cells for the
// "switching expert (low-noise)" step (its fill went from 19 to 12 cells: it looked as if the
// job went back), and at 40 columns it came and went between the stages.
TEST(WanctlProgress, TheBarKeepsItsSizeThroughEveryStage) {
  for (int cols = 1; cols <= 240; ++cols) {
    proto::JobInfo j = running_job();
    std::string first;
    for (const char* stage : kStages) {
      j.stage = stage;
      const std::string bar = bar_of(progress_line(j, cols));
      if (stage == kStages[0]) first = bar;
      EXPECT_EQ(bar, first) << "columns " << cols << ", stage " << stage << ": " << progress_line(j, cols);
    }
    j.state = "done";
    j.stage.clear();
    j.step = 40;
    EXPECT_EQ(bar_of(progress_line(j, cols)), first) << "columns " << cols << ": " << progress_line(j, cols);
    if (cols >= 80) EXPECT_EQ(first, "5:30") << "columns " << cols;
    if (cols <= 40) EXPECT_EQ(first, "") << "columns " << cols;
  }
}

TEST(WanctlProgress, ANarrowLineDropsTheSpeedThenTheEtaThenCutsTheStage) {
  proto::JobInfo j = running_job();
  EXPECT_EQ(progress_line(j, 40), "j-10 20/40 switching expert (low-noise)");
  EXPECT_EQ(progress_line(j, 50), "j-10 20/40 switching expert (low-noise) eta 4m05s");
  j.stage = "denoising";
  j.sec_per_step = 0.55;
  j.eta_s = 20;
  EXPECT_EQ(progress_line(j, 41), "j-10 20/40 denoising 0.55 s/step eta 20s");
  EXPECT_EQ(progress_line(j, 40), "j-10 20/40 denoising eta 20s");
  EXPECT_EQ(progress_line(j, 25), "j-10 20/40 denoising");
  EXPECT_EQ(progress_line(j, 18), "j-10 20/40 denois");
  j.step = 5;  // padded to the digits of the total: the tail stays where it was
  EXPECT_EQ(progress_line(j, 41), "j-10  5/40 denoising 0.55 s/step eta 20s");
  for (int cols = 1; cols <= 40; ++cols) {
    const std::string line = progress_line(j, cols);
    EXPECT_TRUE(line.empty() || line.back() != ' ') << "columns " << cols << ": '" << line << "'";  // no dangling space
  }
}

// A terminal of `cols` columns that applies what wanctl writes: printable characters (with
// autowrap onto a new row), "\r", "\n" and "\033[K". Enough to see what a user sees.
struct Screen {
  explicit Screen(int c) : cols(c), rows(1) {}
  void feed(const std::string& bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const char ch = bytes[i];
      if (ch == '\r') {
        col = 0;
      } else if (ch == '\n') {
        new_row();
      } else if (ch == '\033') {
        ASSERT_EQ(bytes.compare(i, 3, "\033[K"), 0) << "an unexpected escape sequence";
        rows.back().resize(static_cast<std::size_t>(std::min<int>(col, rows.back().size())));
        i += 2;
      } else {
        if (col == cols) {  // autowrap: a line wider than the terminal
          new_row();
          ++wraps;
        }
        std::string& r = rows.back();
        if (r.size() <= static_cast<std::size_t>(col)) r.resize(static_cast<std::size_t>(col) + 1, ' ');
        r[static_cast<std::size_t>(col++)] = ch;
      }
    }
  }
  void new_row() {
    rows.emplace_back();
    col = 0;
  }
  int cols;
  int col = 0;
  int wraps = 0;
  std::vector<std::string> rows;
};

TEST(WanctlProgress, RedrawsInPlaceAtEveryWidthWithNothingLeftOver) {
  for (int cols : {20, 40, 57, 80, 120, 200}) {
    Screen screen(cols);
    ProgressDrawer drawer;
    proto::JobInfo j = running_job();
    j.step = 0;
    j.sec_per_step = 0;
    j.eta_s = 0;
    std::string last;
    auto draw = [&] {
      screen.feed(drawer.redraw(j, cols));
      last = progress_line(j, cols);
      ASSERT_EQ(screen.rows.size(), 1u) << "columns " << cols;
      EXPECT_EQ(screen.rows.back(), last) << "columns " << cols;  // no leftover of a longer line
    };
    for (const char* stage : {"loading", "encoding"}) {
      j.stage = stage;
      draw();
    }
    for (int k = 1; k <= 40; ++k) {
      j.stage = k == 21 ? "switching expert (low-noise)" : "denoising";
      j.step = k;
      j.sec_per_step = k == 40 ? 10.5 : 0.55;
      j.eta_s = (40 - k) * 0.55;
      draw();
    }
    for (const char* stage : {"decoding", "writing"}) {
      j.stage = stage;
      draw();
    }
    j.state = "done";
    j.stage.clear();
    draw();
    EXPECT_EQ(screen.wraps, 0) << "columns " << cols;
  }
}

// Walk-through 2026-12-07: a tmux window shrunk from 100 to 40 columns mid-job reflowed the
// old line onto two rows, "\r" went back to the second one, and the first part of the old
// line ("j-6 [##############................] 19/") stayed above the new line.
TEST(WanctlProgress, ANarrowedTerminalGetsTheNewLineOnAFreshRow) {
  ProgressDrawer drawer;
  proto::JobInfo j = running_job();
  j.stage = "denoising";
  const std::string wide = drawer.redraw(j, 100);
  EXPECT_EQ(wide, "\r" + progress_line(j, 100) + "\033[K");
  EXPECT_GT(progress_line(j, 100).size(), 40u);
  EXPECT_EQ(drawer.redraw(j, 100).rfind("\r", 0), 0u) << "same width: in place";
  EXPECT_EQ(drawer.redraw(j, 40), "\n\r" + progress_line(j, 40) + "\033[K") << "narrower than the old line";
  EXPECT_EQ(drawer.redraw(j, 40).rfind("\r", 0), 0u) << "then in place again";
  EXPECT_EQ(drawer.redraw(j, 100).rfind("\r", 0), 0u) << "wider: the old line fits, in place";
  drawer.reset();
  EXPECT_EQ(drawer.redraw(j, 20).rfind("\r", 0), 0u) << "after a reset nothing is replaced";
  EXPECT_TRUE(drawer.drawn());
}

TEST(WanctlStatus, ShowsTheCardsAndTheRealVideoSize) {
  proto::JobInfo j = running_job();
  j.state = "done";
  j.stage.clear();
  j.width = 832;
  j.height = 480;
  j.frames = 81;
  j.video_width = 624;  // an i2v video follows the image's aspect
  j.video_height = 624;
  j.video_frames = 81;
  j.ran_on = "cfg-parallel@0,1";
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  print_job(f, j);
  std::fclose(f);
  const std::string out(buf, len);
  std::free(buf);
  EXPECT_NE(out.find("video:     624x624, 81 frames"), std::string::npos) << out;
  EXPECT_NE(out.find("ran on:    cfg-parallel@0,1"), std::string::npos) << out;
  EXPECT_NE(out.find("832x480, 81 frames"), std::string::npos) << out;
}

// Note [Piped progress]: with stderr not a terminal, one plain line per change of state,
// stage or step; repeated events (the same step with a new speed) print nothing, and no
// line carries a carriage return or an escape sequence.
TEST(WanctlProgress, APipedGenerateLogsOneLinePerStageAndStep) {
  ProgressLog log;
  proto::JobInfo j;
  j.id = "j-4";
  j.state = "queued";
  j.total_steps = 3;
  std::vector<std::string> lines;
  auto feed = [&] {
    const std::string l = log.next(j);
    if (!l.empty()) lines.push_back(l);
  };
  feed();
  feed();  // the same event again
  j.state = "running";
  for (const char* stage : {"loading", "encoding", "denoising"}) {
    j.stage = stage;
    feed();
  }
  for (int k = 1; k <= 3; ++k) {
    j.step = k;
    j.sec_per_step = 0.5 * k;
    j.eta_s = 3 - k;
    feed();
    j.sec_per_step += 0.01;  // a speed update of the same step: no new line
    feed();
  }
  for (const char* stage : {"decoding", "writing"}) {
    j.stage = stage;
    feed();
  }
  j.state = "done";
  j.stage.clear();
  feed();
  const std::vector<std::string> want = {
      "j-4 queued step 0/3\n",
      "j-4 running step 0/3 loading\n",
      "j-4 running step 0/3 encoding\n",
      "j-4 running step 0/3 denoising\n",
      "j-4 running step 1/3 denoising 0.500 s/step eta 2s\n",
      "j-4 running step 2/3 denoising 1.000 s/step eta 1s\n",
      "j-4 running step 3/3 denoising 1.500 s/step\n",
      "j-4 running step 3/3 decoding 1.510 s/step\n",
      "j-4 running step 3/3 writing 1.510 s/step\n",
      "j-4 done step 3/3 1.510 s/step\n",
  };
  EXPECT_EQ(lines, want);
  for (const auto& l : lines) {
    EXPECT_EQ(l.find('\r'), std::string::npos) << l;
    EXPECT_EQ(l.find('\033'), std::string::npos) << l;
    EXPECT_EQ(l.find('\n'), l.size() - 1) << "one line: " << l;
  }
}

std::string models_text(const proto::ModelList& m) {
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  print_models(f, m);
  std::fclose(f);
  const std::string out(buf, len);
  std::free(buf);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> v;
  std::size_t start = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    v.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return v;
}

proto::ModelInfo release_model(const std::string& name, const std::string& variant,
                               std::vector<std::string> tasks, int multiple, int h, int frames) {
  proto::ModelInfo m;
  m.name = name;
  m.pipeline = "wan";
  m.variant = variant;
  m.tasks = std::move(tasks);
  m.size_multiple = multiple;
  m.default_width = 1280;
  m.default_height = h;
  m.default_frames = frames;
  return m;
}

// Note [Models table]. Walk-through 2026-12-07: "WxH multiples of 16, default 1280x720x81"
// ran out of its 34 columns into DIR. Every cell now ends before the next column starts (the
// header's offsets), the sizes sit on continuation lines in their own column, and without
// paths (a user's view) the table is at most 80 columns wide.
TEST(WanctlModels, EveryCellFitsItsColumnAndSizesWrapOntoContinuationLines) {
  proto::ModelList list;
  list.models.push_back(release_model("i2v-A14B", "i2v-A14B", {"i2v"}, 16, 720, 81));
  list.models.push_back(release_model("ti2v-5B-long-name-here", "ti2v-5B", {"ti2v", "t2v", "i2v"}, 32, 704, 121));
  proto::ModelInfo broken = release_model("broken", "", {}, 0, 0, 0);
  broken.default_width = 0;
  broken.error = "cannot read config.json: the file ends in the middle of an object, at byte 17 of 17; "
                 "rewrite it from the model release";
  list.models.push_back(broken);
  for (bool admin : {false, true}) {
    for (auto& m : list.models) m.dir = admin ? "/srv/models/" + m.name : "";
    const std::string out = models_text(list);
    const std::vector<std::string> lines = lines_of(out);
    ASSERT_GE(lines.size(), 7u) << out;
    const std::string& header = lines[0];
    const std::vector<std::string> names = {"NAME", "PIPELINE", "VARIANT", "TASKS", "SIZES", "DIR"};
    std::vector<std::size_t> col;
    for (const auto& n : names) col.push_back(header.find(n));
    EXPECT_EQ(col.back() != std::string::npos, admin) << "DIR only when the daemon sent paths:\n" << out;
    if (!admin) col.pop_back();
    for (std::size_t c = 1; c < col.size(); ++c) ASSERT_GT(col[c], col[c - 1]) << header;
    // The rows (not the error lines nor the footnote): each cell starts at its column, with
    // at least one space before it, so no cell ran into the next one.
    int rows = 0, sizes_lines = 0;
    for (std::size_t i = 1; i < lines.size(); ++i) {
      const std::string& l = lines[i];
      const std::size_t first = l.find_first_not_of(' ');
      if (l.rfind("  error: ", 0) == 0 || first == 4) continue;  // the error and its wrapped lines
      if (l.rfind("frames are", 0) == 0) continue;
      if (l[0] != ' ') {
        ++rows;
        for (std::size_t c = 1; c < col.size(); ++c) {
          ASSERT_GT(l.size(), col[c]) << "row " << i << " ends before column " << names[c] << ":\n" << out;
          EXPECT_EQ(l[col[c] - 1], ' ') << "column " << names[c] << " of row " << i << ":\n" << out;
          EXPECT_NE(l[col[c]], ' ') << "column " << names[c] << " of row " << i << ":\n" << out;
        }
      } else {  // a continuation line: only the SIZES cell
        ++sizes_lines;
        EXPECT_EQ(l.find_first_not_of(' '), col[4]) << "continuation line " << i << ":\n" << out;
      }
      if (!admin) EXPECT_LE(l.size(), 80u) << "line " << i << ":\n" << out;
    }
    EXPECT_EQ(rows, 3) << out;
    EXPECT_EQ(sizes_lines, 2) << out;
    EXPECT_NE(out.find("WxH multiples of 16"), std::string::npos) << out;
    EXPECT_NE(out.find("default 1280x720x81"), std::string::npos) << out;
    EXPECT_NE(out.find("default 1280x704x121"), std::string::npos) << out;
    EXPECT_NE(out.find("  error: cannot read config.json"), std::string::npos) << out;
    for (const auto& l : lines) EXPECT_LE(l.size(), admin ? 120u : 100u) << l;
    if (admin) EXPECT_NE(out.find("/srv/models/i2v-A14B"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace wand::ctl
