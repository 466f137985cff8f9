// wanctl's human output (ctl/output.h): the progress line fits any terminal width and
// names the job's stage; status shows where a job ran and its video's real size.
#include <gtest/gtest.h>

#include "ctl/output.h"

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

}  // namespace
}  // namespace wand::ctl
