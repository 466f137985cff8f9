// wand driven through wanctl: generate, submit/status/ls/fetch, cancel, priorities,
// tiers/models/plan, exit codes.
#include <fstream>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> job_args(const std::string& seed, const std::string& steps = "6") {
  return {"--model", "fake", "--prompt", "a lighthouse at dusk", "--size", "32x24",
          "--frames", "9", "--steps", steps, "--seed", seed};
}

TEST(WanctlCli, GenerateWritesTheVideoAndFetchGivesTheSameBytes) {
  DaemonFixture d(5);
  d.start();
  auto out = d.dir() / "out.wandrgb";
  auto args = job_args("11");
  args.insert(args.begin(), "generate");
  args.insert(args.end(), {"-o", out.string(), "--json"});
  CmdResult g = d.wanctl(args);
  ASSERT_EQ(g.exit_code, 0) << g.err << d.log();
  json gj = g.json();
  EXPECT_EQ(gj["state"], "done");
  EXPECT_EQ(gj["step"], 6);
  std::string video = file_bytes(out);
  ASSERT_EQ(video.rfind("WANDRGB1 9 24 32 ", 0), 0u);
  EXPECT_EQ(video.size(), gj["output_bytes"].get<std::size_t>());

  std::string id = gj["id"];
  CmdResult f = d.wanctl({"fetch", id, "-o", (d.dir() / "again").string()});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(file_bytes(d.dir() / "again"), video);

  CmdResult st = d.wanctl({"status", id, "--json"});
  ASSERT_EQ(st.exit_code, 0);
  EXPECT_EQ(st.json()["state"], "done");
  EXPECT_EQ(st.json()["step"], 6);

  CmdResult ls = d.wanctl({"ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0);
  ASSERT_EQ(ls.json()["jobs"].size(), 1u);
  EXPECT_EQ(ls.json()["jobs"][0]["id"], id);
  d.stop();
}

TEST(WanctlCli, SubmitPrintsAnIdAndCancelStopsQueuedAndRunningJobs) {
  DaemonFixture d(40);  // 40 ms per step: jobs stay running long enough to cancel
  d.start();
  auto a = job_args("1", "200");
  a.insert(a.begin(), "submit");
  a.push_back("--json");
  CmdResult s1 = d.wanctl(a);
  CmdResult s2 = d.wanctl(a);
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  ASSERT_EQ(s2.exit_code, 0) << s2.err;
  std::string running = s1.json()["id"], queued = s2.json()["id"];
  EXPECT_NE(running, queued);

  CmdResult c2 = d.wanctl({"cancel", queued, "--json"});
  ASSERT_EQ(c2.exit_code, 0) << c2.err;
  EXPECT_EQ(c2.json()["state"], "cancelled");
  EXPECT_EQ(d.wanctl({"status", queued, "--json"}).json()["state"], "cancelled");

  // Wait until the first job has really started, through the event stream.
  RawClient w(d.socket());
  w.hello();
  w.send_json({{"type", "watch"}, {"job", running}});
  for (;;) {
    auto ev = w.receive();
    ASSERT_TRUE(ev);
    if ((*ev)["job"]["step"].get<int>() >= 1) break;
  }
  CmdResult c1 = d.wanctl({"cancel", running, "--json"});
  ASSERT_EQ(c1.exit_code, 0) << c1.err;
  EXPECT_TRUE(c1.json()["pending"].get<bool>());
  // The watch stream ends with the cancelled state, well before step 200.
  json last;
  for (;;) {
    auto ev = w.receive();
    ASSERT_TRUE(ev);
    last = (*ev)["job"];
    if (last["state"] != "running") break;
  }
  EXPECT_EQ(last["state"], "cancelled");
  EXPECT_LT(last["step"].get<int>(), 200);
  EXPECT_FALSE(std::filesystem::exists(d.state_dir() / "checkpoints" / (running + ".ckpt")));
  // watch on a cancelled job exits 5
  EXPECT_EQ(d.wanctl({"watch", running}).exit_code, 5);
  d.stop();
}

TEST(WanctlCli, HigherPriorityRunsFirstFifoWithinAPriority) {
  DaemonFixture d(20);
  d.start();
  // A blocker occupies the runner while the others queue up.
  RawClient c(d.socket());
  c.hello();
  std::string blocker = c.call({{"type", "submit"}, {"job", fake_job(1, 30)}})["id"];
  {
    // Make sure it runs before the others arrive (else the runner may pick a later one).
    RawClient w(d.socket());
    w.hello();
    w.send_json({{"type", "watch"}, {"job", blocker}});
    for (;;) {
      auto ev = w.receive();
      ASSERT_TRUE(ev);
      if ((*ev)["job"]["state"] == "running") break;
    }
  }
  std::vector<std::pair<std::string, int>> jobs;
  for (int p : {0, 5, 0, 5, 1}) {
    std::string id = c.call({{"type", "submit"}, {"job", fake_job(2, 1, p)}})["id"];
    jobs.emplace_back(id, p);
  }
  // Follow the last job that should run.
  c.send_json({{"type", "watch"}, {"job", jobs[2].first}});
  for (;;) {
    auto ev = c.receive();
    ASSERT_TRUE(ev);
    if ((*ev)["job"]["state"] == "done") break;
  }
  json list = c.call({{"type", "list"}});
  std::map<std::string, double> started;
  for (const auto& j : list["jobs"]) started[j["id"]] = j["started_at"];
  std::vector<std::string> order;
  for (const auto& [id, _] : jobs) order.push_back(id);
  std::sort(order.begin(), order.end(), [&](auto& x, auto& y) { return started[x] < started[y]; });
  EXPECT_EQ(order, (std::vector<std::string>{jobs[1].first, jobs[3].first, jobs[4].first,
                                              jobs[0].first, jobs[2].first}));
  EXPECT_LT(started[blocker], started[jobs[1].first]);
  d.stop();
}

TEST(WanctlCli, TiersModelsPlanAndExitCodes) {
  DaemonFixture d(1);
  CmdResult nodaemon = d.wanctl({"ls"});
  EXPECT_EQ(nodaemon.exit_code, 3);
  EXPECT_NE(nodaemon.err.find("not running"), std::string::npos) << nodaemon.err;

  d.start();
  CmdResult t = d.wanctl({"tiers", "--json"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  // No memory section: the pool is sized from this machine (Note [Auto memory]; no GPU here,
  // so host and spool only), and the tiers are the pool's, each marked "auto".
  EXPECT_EQ(t.json()["measured"], true) << t.out;
  EXPECT_EQ(t.json()["source"], "pool") << t.out;
  ASSERT_FALSE(t.json()["tiers"].empty()) << t.out;
  for (const auto& tier : t.json()["tiers"]) EXPECT_EQ(tier["source"], "auto") << tier.dump();
  CmdResult th = d.wanctl({"tiers"});
  EXPECT_NE(th.out.find("source: pool (measured)"), std::string::npos) << th.out;
  EXPECT_NE(th.out.find("sized from this machine"), std::string::npos) << th.out;

  CmdResult m = d.wanctl({"models", "--json"});
  ASSERT_EQ(m.exit_code, 0);
  ASSERT_EQ(m.json()["models"].size(), 1u);
  EXPECT_EQ(m.json()["models"][0]["name"], "fake");
  EXPECT_EQ(m.json()["models"][0]["pipeline"], "fake");

  auto p = job_args("1");
  p.insert(p.begin(), "plan");
  p.push_back("--json");
  CmdResult plan = d.wanctl(p);
  EXPECT_EQ(plan.exit_code, 6) << plan.err;  // kExitNoPlan: the fake model cannot be planned
  EXPECT_EQ(plan.json()["available"], false) << plan.out;

  EXPECT_EQ(d.wanctl({"status", "j-4242"}).exit_code, 4);
  EXPECT_EQ(d.wanctl({"cancel", "j-4242"}).exit_code, 4);
  EXPECT_EQ(d.wanctl({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(d.wanctl({"generate", "--model", "fake"}).exit_code, 2);  // missing options
  CmdResult bad = d.wanctl({"submit", "--model", "fake", "--size", "30x24", "--frames", "9", "--steps", "2"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("width"), std::string::npos) << bad.err;
  CmdResult unknown = d.wanctl({"submit", "--model", "nope", "--size", "32x24", "--frames", "9", "--steps", "2"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("unknown_model"), std::string::npos) << unknown.err;
  CmdResult help = d.wanctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("Exit codes"), std::string::npos);

  CmdResult sd = d.wanctl({"shutdown", "--json"});
  EXPECT_EQ(sd.exit_code, 0) << sd.err;
  EXPECT_EQ(sd.json()["type"], "shutdown");
  d.stop();  // already exiting: stop() reaps it, exit status 0
}

TEST(WandDaemon, RefusesASecondDaemonOnALiveSocketAndReplacesAStaleOne) {
  DaemonFixture d(1);
  d.start();
  CmdResult second = run_command({WAND_EXE, "--socket", d.socket(), "--state-dir",
                                  (d.dir() / "other-state").string()});
  EXPECT_EQ(second.exit_code, 2);
  EXPECT_NE(second.err.find("already listening"), std::string::npos) << second.err;
  d.kill9();  // leaves a stale socket file behind
  ASSERT_TRUE(std::filesystem::exists(d.socket()));
  d.start();  // probes it, removes it, binds again
  EXPECT_EQ(d.wanctl({"ls"}).exit_code, 0);
  d.stop();
  EXPECT_FALSE(std::filesystem::exists(d.socket()));
}

TEST(WandDaemon, BadFlagsAndConfigsFailAtStartNamingTheField) {
  DaemonFixture d(1);
  CmdResult r = run_command({WAND_EXE, "--socket", d.socket(), "--state-dir", d.state_dir().string(),
                             "--model", "x=" + (d.dir() / "missing").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
  std::ofstream(d.dir() / "bad.json") << R"({"socket": {"path": "relative.sock"}})";
  CmdResult c = run_command({WAND_EXE, "--config", (d.dir() / "bad.json").string()});
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_NE(c.err.find("socket.path"), std::string::npos) << c.err;
}

}  // namespace
}  // namespace wand::test
