// Durability: SIGKILL during a running job, restart, the job resumes from its
// last checkpoint and its video is bitwise identical to an uninterrupted run.
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;

TEST(CrashResume, SigkillMidJobThenRestartGivesIdenticalOutput) {
  DaemonFixture d(25);
  d.start();
  json spec = fake_job(2024, 40);
  std::string id;
  {
    RawClient c(d.socket());
    c.hello();
    id = c.call({{"type", "submit"}, {"job", spec}})["id"];
  }
  json at = watch_until(d, id, [](const json& j) { return j["step"].get<int>() >= 6; });
  ASSERT_EQ(at["state"], "running");
  d.kill9();

  d.start();
  json done = watch_until(d, id, [](const json&) { return false; });
  ASSERT_EQ(done["state"], "done") << d.log();
  EXPECT_GE(done["resumed_from_step"].get<int>(), 6);  // resumed, not restarted
  EXPECT_LT(done["resumed_from_step"].get<int>(), 40);
  std::string resumed = fetch(d, id);

  // The same job uninterrupted.
  std::string ref_id;
  {
    RawClient c(d.socket());
    c.hello();
    ref_id = c.call({{"type", "submit"}, {"job", spec}})["id"];
  }
  json ref = watch_until(d, ref_id, [](const json&) { return false; });
  ASSERT_EQ(ref["state"], "done");
  EXPECT_EQ(ref["resumed_from_step"], -1);
  std::string uninterrupted = fetch(d, ref_id);
  ASSERT_GT(uninterrupted.size(), 1000u);
  EXPECT_TRUE(resumed == uninterrupted) << "resumed video differs from the uninterrupted one";
  d.stop();
}

TEST(CrashResume, SigtermCheckpointsTheRunningJobAndQueuedJobsSurvive) {
  DaemonFixture d(25);
  d.start();
  std::string running, queued;
  {
    RawClient c(d.socket());
    c.hello();
    running = c.call({{"type", "submit"}, {"job", fake_job(5, 40)}})["id"];
    queued = c.call({{"type", "submit"}, {"job", fake_job(6, 3)}})["id"];
  }
  watch_until(d, running, [](const json& j) { return j["step"].get<int>() >= 3; });
  d.stop();  // SIGTERM: exit 0 after stopping the job at a block boundary
  EXPECT_TRUE(std::filesystem::exists(d.state_dir() / "checkpoints" / (running + ".ckpt")));
  d.start();
  json r = watch_until(d, running, [](const json&) { return false; });
  EXPECT_EQ(r["state"], "done");
  EXPECT_GE(r["resumed_from_step"].get<int>(), 3);
  json q = watch_until(d, queued, [](const json&) { return false; });
  EXPECT_EQ(q["state"], "done");
  d.stop();
}


TEST(CrashResume, WanctlGenerateSurvivesADaemonCrashAndRestart) {
  DaemonFixture d(25);
  d.start();
  auto out = d.dir() / "gen.video";
  CmdResult gen;
  std::thread client([&] {
    gen = d.wanctl({"generate", "--model", "fake", "--prompt", "a red kite", "--size", "32x24",
                    "--frames", "9", "--steps", "30", "--seed", "77", "--no-progress", "-o", out.string()});
  });
  // The first job of a fresh state dir is j-1: crash the daemon once it is under way.
  for (;;) {
    RawClient c(d.socket());
    c.hello();
    json r = c.call({{"type", "status"}, {"job", "j-1"}});
    if (r["type"] == "job") {
      watch_until(d, "j-1", [](const json& j) { return j["step"].get<int>() >= 4; });
      break;
    }
    // not submitted yet: ask again (the client thread is starting up)
  }
  d.kill9();
  d.start();
  client.join();
  ASSERT_EQ(gen.exit_code, 0) << gen.err << d.log();
  EXPECT_NE(gen.err.find("reconnecting"), std::string::npos) << gen.err;
  std::ifstream in(out, std::ios::binary);
  std::string resumed(std::istreambuf_iterator<char>(in), {});

  RawClient c(d.socket());
  c.hello();
  json spec = {{"model", "fake"}, {"prompt", "a red kite"}, {"width", 32}, {"height", 24},
               {"frames", 9}, {"steps", 30}, {"seed", 77}};
  std::string ref = c.call({{"type", "submit"}, {"job", spec}})["id"];
  ASSERT_EQ(watch_until(d, ref, [](const json&) { return false; })["state"], "done");
  EXPECT_TRUE(fetch(d, ref) == resumed);
  d.stop();
}

}  // namespace
}  // namespace wand::test
