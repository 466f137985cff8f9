// wanctl and wand as a user meets them (issue 20): --version, per-command help, did-you-mean,
// fetch to standard output, one error code per cause in --json, refusals at submit with exit 2,
// job stages and placement in status, Ctrl-C in generate, host memory taken at start, and
// `wand --check-config` failing what the daemon refuses.
#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/daemon/harness.h"

extern char** environ;

namespace wand::test {
namespace {

using nlohmann::json;

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> job(const std::string& cmd, const std::string& seed, const std::string& steps = "4") {
  return {cmd, "--model", "fake", "--prompt", "a kite", "--size", "32x24", "--frames", "9", "--steps", steps,
          "--seed", seed};
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

TEST(WanctlConventions, VersionOnBothPrograms) {
  CmdResult c = run_command({WANCTL_EXE, "--version"});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out.rfind("wanctl 0.", 0), 0u) << c.out;
  EXPECT_TRUE(contains(c.out, "protocol 1")) << c.out;
  CmdResult w = run_command({WAND_EXE, "--version"});
  EXPECT_EQ(w.exit_code, 0) << w.err;
  EXPECT_EQ(w.out.rfind("wand 0.", 0), 0u) << w.out;
  // The same release on both (one project version).
  EXPECT_EQ(c.out.substr(7), w.out.substr(5));
}

TEST(WanctlConventions, EachCommandHasItsOwnHelp) {
  CmdResult g = run_command({WANCTL_EXE, "generate", "--help"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  EXPECT_TRUE(contains(g.out, "usage: wanctl [--socket PATH] [--json] generate")) << g.out;
  EXPECT_TRUE(contains(g.out, "--image FILE")) << g.out;
  EXPECT_TRUE(contains(g.out, "Ctrl-C")) << g.out;
  EXPECT_FALSE(contains(g.out, "Commands:")) << "the command's help, not the overview";
  CmdResult f = run_command({WANCTL_EXE, "help", "fetch"});
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_TRUE(contains(f.out, "fetch ID -o FILE")) << f.out;
  EXPECT_TRUE(contains(f.out, "standard output")) << f.out;
  CmdResult s = run_command({WANCTL_EXE, "-h", "status"});  // the flag before the command too
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_TRUE(contains(s.out, "status ID")) << s.out;
  CmdResult all = run_command({WANCTL_EXE, "--help"});
  EXPECT_EQ(all.exit_code, 0);
  EXPECT_TRUE(contains(all.out, "Commands:"));
}

TEST(WanctlConventions, AMistypedCommandGetsADidYouMean) {
  CmdResult r = run_command({WANCTL_EXE, "stauts", "j-1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "unknown command 'stauts' (did you mean 'status'?)")) << r.err;
  CmdResult g = run_command({WANCTL_EXE, "gen", "--model", "x"});
  EXPECT_EQ(g.exit_code, 2);
  EXPECT_TRUE(contains(g.err, "did you mean 'generate'?")) << g.err;
  CmdResult far = run_command({WANCTL_EXE, "frobnicate"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_TRUE(contains(far.err, "unknown command 'frobnicate'")) << far.err;
  EXPECT_FALSE(contains(far.err, "did you mean")) << far.err;
  CmdResult o = run_command({WANCTL_EXE, "submit", "--promt", "a cat"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(contains(o.err, "unknown option --promt (did you mean --prompt?)")) << o.err;
  CmdResult j = run_command({WANCTL_EXE, "--json", "fetc", "j-1"});
  EXPECT_EQ(j.exit_code, 2);
  EXPECT_EQ(j.json()["code"], "usage");
  EXPECT_TRUE(contains(j.json()["message"].get<std::string>(), "did you mean 'fetch'?")) << j.out;
}

TEST(WanctlConventions, OneErrorCodePerCauseInJson) {
  DaemonFixture d(1);
  CmdResult nodaemon = d.wanctl({"ls", "--json"});
  EXPECT_EQ(nodaemon.exit_code, 3);
  EXPECT_EQ(nodaemon.json()["code"], "not_running") << nodaemon.out;
  d.start();
  for (const char* cmd : {"watch", "status", "cancel", "fetch"}) {
    std::vector<std::string> args = {cmd, "j-4242", "--json"};
    if (std::string(cmd) == "fetch") args.insert(args.end(), {"-o", (d.dir() / "x").string()});
    CmdResult r = d.wanctl(args);
    EXPECT_EQ(r.exit_code, 4) << cmd << ": " << r.out << r.err;
    json e = r.json();
    EXPECT_EQ(e["type"], "error") << cmd;
    EXPECT_EQ(e["code"], "not_found") << cmd << ": " << r.out;
    EXPECT_FALSE(contains(e["message"].get<std::string>(), "not_found")) << cmd << ": the code is not repeated";
  }
  EXPECT_FALSE(std::filesystem::exists(d.dir() / "x")) << "a failed fetch leaves no file behind";
  CmdResult bad = d.wanctl({"submit", "--model", "fake", "--size", "36x24", "--frames", "9", "--steps", "2", "--json"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.json()["code"], "bad_request");
  d.stop();
}

TEST(WanctlConventions, FetchDashWritesTheVideoToStandardOutput) {
  DaemonFixture d(1);
  d.start();
  auto out = d.dir() / "v.wandrgb";
  auto g = job("generate", "5");
  g.insert(g.end(), {"-o", out.string()});
  CmdResult gen = d.wanctl(g);
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const std::string id = gen.out.substr(0, gen.out.find(':'));
  CmdResult f = d.wanctl({"fetch", id, "-o", "-"});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(f.out, file_bytes(out)) << "stdout carries exactly the video";
  EXPECT_EQ(f.out.rfind("WANDRGB1 9 24 32 ", 0), 0u);
  // generate -o - too; its summary line goes to stderr.
  auto g2 = job("generate", "5");
  g2.insert(g2.end(), {"-o", "-", "--no-progress"});
  CmdResult gen2 = d.wanctl(g2);
  ASSERT_EQ(gen2.exit_code, 0) << gen2.err;
  EXPECT_EQ(gen2.out, f.out) << "same request, same bytes";
  EXPECT_TRUE(contains(gen2.err, "standard output written")) << gen2.err;
  // stdout cannot carry both the video and JSON.
  EXPECT_EQ(d.wanctl({"fetch", id, "-o", "-", "--json"}).exit_code, 2);
  d.stop();
}

// Note [Image sniff] (scheduler/job_spec.cpp): a non-image file is refused at submit.
TEST(WanctlConventions, ANonImageFileIsRefusedAtSubmitWithExit2) {
  DaemonFixture d(1);
  d.start();
  std::ofstream(d.dir() / "notes.txt") << "ffconcat version 1.0\nfile ../secret.mp4\n";
  auto s = job("submit", "1");
  s.insert(s.end(), {"--image", (d.dir() / "notes.txt").string()});
  CmdResult r = d.wanctl(s);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "bad_request")) << r.err;
  EXPECT_TRUE(contains(r.err, "not a PNG, JPEG")) << r.err;
  EXPECT_EQ(d.wanctl({"ls", "--json"}).json()["jobs"].size(), 0u) << "nothing was queued";
  // A PNG signature passes the check (the fake model does not decode images).
  const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
  std::ofstream(d.dir() / "a.png", std::ios::binary).write(png, sizeof png - 1);
  s = job("submit", "1");
  s.insert(s.end(), {"--image", (d.dir() / "a.png").string()});
  CmdResult ok = d.wanctl(s);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  d.stop();
}

TEST(WanctlConventions, StatusShowsTheVideoSizeAndStagesAreEvents) {
  DaemonFixture d(30);
  d.start();
  CmdResult s = d.wanctl(job("submit", "3", "6"));
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const std::string id = s.out.substr(0, s.out.find('\n'));
  CmdResult w = d.wanctl({"watch", id, "--json"});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  std::vector<std::string> stages;
  std::size_t pos = 0;
  while (pos < w.out.size()) {
    std::size_t nl = w.out.find('\n', pos);
    json ev = json::parse(w.out.substr(pos, nl - pos));
    if (ev["kind"] == "stage") stages.push_back(ev["job"]["stage"]);
    pos = nl + 1;
  }
  // The watch began while the job was queued or early in its steps: at least the end stages.
  ASSERT_GE(stages.size(), 2u) << w.out;
  EXPECT_EQ(stages[stages.size() - 2], "decoding") << w.out;
  EXPECT_EQ(stages.back(), "writing") << w.out;
  json st = d.wanctl({"status", id, "--json"}).json();
  EXPECT_EQ(st["state"], "done");
  EXPECT_EQ(st["video_width"], 32);
  EXPECT_EQ(st["video_height"], 24);
  EXPECT_EQ(st["video_frames"], 9);
  EXPECT_FALSE(st.contains("stage")) << "no stage once done";
  CmdResult human = d.wanctl({"status", id});
  EXPECT_TRUE(contains(human.out, "video:     32x24, 9 frames")) << human.out;
  // The size survives a restart (journaled).
  d.stop();
  d.start();
  EXPECT_EQ(d.wanctl({"status", id, "--json"}).json()["video_frames"], 9);
  d.stop();
}

// --json --version is one JSON object, with the same facts as the text.
TEST(WanctlConventions, JsonVersionIsAnObject) {
  CmdResult text = run_command({WANCTL_EXE, "--version"});
  for (const auto& argv : {std::vector<std::string>{WANCTL_EXE, "--json", "--version"},
                           std::vector<std::string>{WANCTL_EXE, "--version", "--json"}}) {
    CmdResult j = run_command(argv);
    ASSERT_EQ(j.exit_code, 0) << j.err;
    json v = j.json();
    EXPECT_EQ(v.value("program", ""), "wanctl") << j.out;
    EXPECT_EQ(v.value("protocol", 0), 1) << j.out;
    EXPECT_TRUE(contains(text.out, "wanctl " + v.value("version", std::string("?")) + " ")) << j.out << " vs " << text.out;
    EXPECT_TRUE(j.err.empty()) << j.err;
  }
}

struct PipeRun {
  int status = 0;   // waitpid's status
  std::string err;  // what wanctl wrote to stderr
};

// Runs wanctl with its standard output on a pipe whose read end is already closed (the
// reader went away, as `| head -c 10` does once it has its bytes).
PipeRun run_into_closed_pipe(const DaemonFixture& d, std::vector<std::string> args) {
  args.insert(args.begin(), {WANCTL_EXE, "--socket", d.socket()});
  int out[2], err[2];
  EXPECT_EQ(::pipe(out), 0);
  EXPECT_EQ(::pipe(err), 0);
  ::close(out[0]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawn_file_actions_addclose(&fa, err[0]);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  PipeRun r;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ADD_FAILURE() << "spawn wanctl: " << std::strerror(rc);
    ::close(err[0]);
    return r;
  }
  char buf[512];
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0;) r.err.append(buf, static_cast<std::size_t>(n));
  ::close(err[0]);
  EXPECT_EQ(::waitpid(pid, &r.status, 0), pid);
  return r;
}

// Note [Closed output pipe] (ctl/cli.cpp): a reader that went away ends wanctl as it ends
// cat: killed by SIGPIPE (the shell's 141), nothing on stderr; before, `fetch -o - | head`
// printed "write standard output: Broken pipe" and exited 1. Every command that prints.
TEST(WanctlConventions, AClosedOutputPipeEndsWanctlQuietly) {
  DaemonFixture d(1);
  d.start();
  CmdResult gen = d.wanctl([] {
    auto g = job("generate", "5");
    g.insert(g.end(), {"-o", "-", "--no-progress"});
    return g;
  }());
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  const std::string id = "j-1";
  const std::vector<std::vector<std::string>> commands = {
      {"fetch", id, "-o", "-"}, {"ls"},     {"ls", "--json"},     {"status", id}, {"watch", id},
      {"models"},               {"tiers"},  {"--version"},        {"--help"},     [] {
        auto g = job("generate", "6");
        g.insert(g.end(), {"-o", "-"});
        return g;
      }(),
  };
  for (const auto& cmd : commands) {
    std::string name;
    for (const auto& w : cmd) name += w + " ";
    PipeRun r = run_into_closed_pipe(d, cmd);
    EXPECT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGPIPE)
        << name << ": " << (WIFEXITED(r.status) ? "exit " + std::to_string(WEXITSTATUS(r.status)) : "a signal")
        << ", stderr: " << r.err;
    if (cmd[0] == "generate") {
      // Its stderr carries the progress (a log: not a terminal) and nothing about the pipe.
      EXPECT_FALSE(contains(r.err, "Broken pipe") || contains(r.err, "wanctl:")) << name << ": " << r.err;
    } else {
      EXPECT_EQ(r.err, "") << name;
    }
  }
  // The daemon is unaffected.
  EXPECT_EQ(d.wanctl({"status", id, "--json"}).json()["state"], "done");
  d.stop();
}

// Note [Piped progress] (ctl/output.cpp): with stderr not a terminal, generate logs one
// plain line per stage and step as the job goes (a log shows progress before the end), and
// none with --no-progress or --json.
TEST(WanctlConventions, APipedGenerateLogsItsProgressLineByLine) {
  DaemonFixture d(80);  // 80 ms per step: every step is seen
  d.start();
  auto g = job("generate", "7", "5");
  g.insert(g.end(), {"-o", (d.dir() / "a.wandrgb").string()});
  CmdResult r = d.wanctl(g);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\033'), std::string::npos) << r.err;
  EXPECT_TRUE(contains(r.err, "submitted j-1\n")) << r.err;
  for (int k = 2; k <= 5; ++k) {
    const std::string step = "j-1 running step " + std::to_string(k) + "/5 denoising";
    const auto at = r.err.find(step);
    EXPECT_NE(at, std::string::npos) << step << " in:\n" << r.err;
    EXPECT_EQ(r.err.find(step, at + 1), std::string::npos) << "one line per step:\n" << r.err;
  }
  EXPECT_TRUE(contains(r.err, "j-1 running step 5/5 decoding")) << r.err;
  EXPECT_TRUE(contains(r.err, "j-1 running step 5/5 writing")) << r.err;
  EXPECT_TRUE(contains(r.err, "j-1 done step 5/5")) << r.err;
  EXPECT_TRUE(contains(r.out, "a.wandrgb written")) << r.out;
  auto quiet = job("generate", "8", "3");
  quiet.insert(quiet.end(), {"-o", (d.dir() / "b.wandrgb").string(), "--no-progress"});
  CmdResult q = d.wanctl(quiet);
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_FALSE(contains(q.err, "step ")) << q.err;
  auto js = job("generate", "9", "3");
  js.insert(js.end(), {"-o", (d.dir() / "c.wandrgb").string(), "--json"});
  CmdResult jr = d.wanctl(js);
  ASSERT_EQ(jr.exit_code, 0) << jr.err;
  EXPECT_EQ(jr.err, "");
  EXPECT_EQ(jr.json()["state"], "done");
  d.stop();
}

// Issue 15 item 9: an --image that cannot travel in one request frame (8 MiB, the image in
// it base64) is refused by wanctl itself, naming its size and the limit (before: the daemon
// closed the connection and wanctl died of SIGPIPE, exit 141, saying nothing; and a fixed
// 6 MiB limit let through images whose request was just over 8 MiB). Nothing reaches the
// daemon, and generate leaves no output file behind.
TEST(WanctlConventions, AnImageTooLargeForARequestIsRefusedWithTheLimit) {
  DaemonFixture d(1);
  d.start();
  const auto big = d.dir() / "big.png";
  auto write_png = [&](std::size_t size) {
    std::string bytes = "\x89PNG\r\n\x1a\n";
    bytes.resize(size, '\0');
    std::ofstream(big, std::ios::binary | std::ios::trunc) << bytes;
  };
  for (std::size_t size : {std::size_t{6} << 20, (std::size_t{6} << 20) + 1, std::size_t{7} << 20}) {
    write_png(size);
    auto s = job("submit", "1");
    s.insert(s.end(), {"--image", big.string()});
    CmdResult r = d.wanctl(s);
    EXPECT_EQ(r.exit_code, 2) << size << ": " << r.out << r.err;
    EXPECT_TRUE(contains(r.err, "--image " + big.string() + " is " + std::to_string(size) + " bytes")) << r.err;
    EXPECT_TRUE(contains(r.err, "more than the 8388608 (8 MiB) a request to wand may have")) << r.err;
    EXPECT_FALSE(contains(r.err, "Broken pipe") || contains(r.err, "connection")) << r.err;
    s.push_back("--json");
    CmdResult j = d.wanctl(s);
    EXPECT_EQ(j.exit_code, 2);
    EXPECT_EQ(j.json()["code"], "usage") << j.out;
    auto g = job("generate", "1");
    g.insert(g.end(), {"--image", big.string(), "-o", (d.dir() / "v.wandrgb").string()});
    EXPECT_EQ(d.wanctl(g).exit_code, 2);
    EXPECT_FALSE(std::filesystem::exists(d.dir() / "v.wandrgb")) << "no output file for a refused request";
  }
  EXPECT_EQ(d.wanctl({"ls", "--json"}).json()["jobs"].size(), 0u) << "nothing was queued";
  EXPECT_EQ(d.log().find("frame too large"), std::string::npos) << "nothing oversized reached the daemon:\n" << d.log();
  // 64 KiB less than 6 MiB travels (the fake model does not decode images).
  write_png((std::size_t{6} << 20) - (64u << 10));
  auto s = job("submit", "1");
  s.insert(s.end(), {"--image", big.string()});
  CmdResult ok = d.wanctl(s);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  d.stop();
}

// Note [Interrupting generate] (ctl/cli.cpp).
TEST(WanctlConventions, CtrlCInGenerateSaysTheJobContinuesAndExits130) {
  DaemonFixture d(50);  // 50 ms per step, 40 steps: still running when interrupted
  d.start();
  auto out = d.dir() / "o.wandrgb";
  auto args = job("generate", "9", "40");
  args.insert(args.begin(), {WANCTL_EXE, "--socket", d.socket()});
  args.insert(args.end(), {"-o", out.string()});
  int err[2];
  ASSERT_EQ(::pipe(err), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawn_file_actions_addclose(&fa, err[0]);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(err[1]);
  // Wait until wanctl follows a running job ("submitted j-1" on stderr, the job running).
  std::string text;
  char buf[512];
  while (!contains(text, "submitted ")) {
    ssize_t n = ::read(err[0], buf, sizeof buf);
    ASSERT_GT(n, 0) << "wanctl ended early: " << text;
    text.append(buf, static_cast<std::size_t>(n));
  }
  const std::string id = "j-1";
  watch_until(d, id, [](const json& j) { return j["step"].get<int>() >= 1; });
  ::kill(pid, SIGINT);
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(err[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of exiting";
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_TRUE(contains(text, "j-1 continues; `wanctl watch j-1` / `wanctl cancel j-1`")) << text;
  EXPECT_FALSE(std::filesystem::exists(out)) << "the empty output wanctl created is removed";
  json done = watch_until(d, id, [](const json&) { return false; });
  EXPECT_EQ(done["state"], "done") << "the job went on";
  d.stop();
}

// Note [Reserved at start] (daemon/daemon.cpp).
TEST(WandDaemonMemory, HostAndSpoolReservedAtStartAreLoggedAndShownInTiers) {
  DaemonFixture d(1);
  std::filesystem::create_directories(d.dir() / "spool");
  std::ofstream(d.dir() / "mem.json") << R"({"memory": {"host": {"bytes": "48MiB", "pinned": false},
      "disk": {"dir": ")" << (d.dir() / "spool").string() << R"(", "bytes": "16MiB"}}})";
  d.start({"--config", (d.dir() / "mem.json").string()});
  EXPECT_TRUE(contains(d.log(), "host tier reserved bytes=48.0 MiB")) << d.log();
  EXPECT_TRUE(contains(d.log(), "disk spool reserved bytes=16.0 MiB")) << d.log();
  CmdResult t = d.wanctl({"tiers"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_TRUE(contains(t.out, "reserved at start: host tier 48.0 MiB of RAM")) << t.out;
  EXPECT_TRUE(contains(t.out, "disk spool 16.0 MiB")) << t.out;
  EXPECT_TRUE(contains(t.out, "PINNED(m)")) << t.out;
  EXPECT_TRUE(contains(t.out, "(c) configured, (m) measured")) << t.out;
  json tj = d.wanctl({"tiers", "--json"}).json();
  bool host = false;
  for (const auto& x : tj["tiers"]) {
    if (x["kind"] == "host") {
      host = true;
      EXPECT_EQ(x["reserved_bytes"], 48u << 20);
    }
  }
  EXPECT_TRUE(host) << tj.dump();
  d.stop();
}

// Note [Check config] (daemon/daemon.h).
TEST(WandCheckConfig, FailsWhatTheDaemonRefusesWithTheSameText) {
  DaemonFixture d(1);
  const std::string missing = (d.dir() / "no-such-model").string();
  std::vector<std::string> base = {WAND_EXE, "--socket", d.socket(), "--state-dir", d.state_dir().string(),
                                   "--model", "x=" + missing};
  CmdResult start = run_command(base);
  auto check_args = base;
  check_args.push_back("--check-config");
  CmdResult check = run_command(check_args);
  EXPECT_EQ(start.exit_code, 2) << start.err;
  EXPECT_EQ(check.exit_code, 2) << check.out << check.err;
  EXPECT_TRUE(contains(check.err, "model directory " + missing + " does not exist")) << check.err;
  const std::string last_start = start.err.substr(start.err.rfind("wand: "));
  EXPECT_EQ(check.err, last_start) << "the same error text as the daemon's";
  // A directory no pipeline recognises.
  std::filesystem::create_directories(d.dir() / "empty");
  CmdResult empty = run_command({WAND_EXE, "--check-config", "--model", "e=" + (d.dir() / "empty").string()});
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_TRUE(contains(empty.err, "is not recognised by any pipeline")) << empty.err;
  // A good one passes and prints the effective configuration.
  CmdResult ok = run_command({WAND_EXE, "--check-config", "--model", "fake=" + (d.dir() / "models" / "fake").string()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(contains(ok.out, "\"fake\"")) << ok.out;
}

}  // namespace
}  // namespace wand::test
