// Identity and access: a second uid cannot see or cancel the first uid's job,
// sees its own, and reaches the socket only through the socket's group. Needs
// root (to fork a client that drops to nobody); skipped otherwise.
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

// Runs fn in a child that dropped to uid/gid; returns the child's exit code.
int as_user(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(90);
    int rc = 91;
    try {
      rc = fn();
    } catch (...) {
      rc = 92;
    }
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

TEST(Identity, SecondUidCannotSeeOrCancelAnotherUsersJob) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to fork a client as another uid";
  if (!::getgrgid(kNogroup)) GTEST_SKIP() << "no group 65534";
  DaemonFixture d(30);
  // nobody must reach the socket directory; the socket itself is 0660 root:nogroup.
  ::chmod(d.dir().c_str(), 0711);
  ::chmod((d.dir() / "run").c_str(), 0711);
  struct group* g = ::getgrgid(kNogroup);
  d.start({"--socket-group", g->gr_name, "--admin-group", ""});

  struct stat st {};
  ASSERT_EQ(::stat(d.socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, kNogroup);

  std::string root_job;
  {
    RawClient c(d.socket());
    json h = c.hello();
    EXPECT_EQ(h["uid"], 0);
    EXPECT_EQ(h["admin"], true);
    root_job = c.call({{"type", "submit"}, {"job", fake_job(1, 100)}})["id"];
  }

  // Each check in the child maps to its own exit code, so a failure says which.
  int rc = as_user(kNobody, kNogroup, [&]() -> int {
    RawClient c(d.socket());
    json h = c.hello();
    if (h["uid"] != kNobody || h["admin"] != false) return 10;
    if (c.call({{"type", "status"}, {"job", root_job}})["code"] != "not_found") return 11;
    if (c.call({{"type", "cancel"}, {"job", root_job}})["code"] != "not_found") return 12;
    if (c.call({{"type", "watch"}, {"job", root_job}})["code"] != "not_found") return 13;
    if (c.call({{"type", "fetch"}, {"job", root_job}})["code"] != "not_found") return 14;
    if (!c.call({{"type", "list"}})["jobs"].empty()) return 15;
    if (c.call({{"type", "shutdown"}})["code"] != "permission_denied") return 16;
    json s = c.call({{"type", "submit"}, {"job", fake_job(2, 1)}});
    if (s["type"] != "submitted") return 17;
    json own = c.call({{"type", "status"}, {"job", s["id"]}});
    if (own["type"] != "job" || own["owner_uid"] != kNobody) return 18;
    json list = c.call({{"type", "list"}});
    if (list["jobs"].size() != 1 || list["jobs"][0]["id"] != s["id"]) return 19;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child check " << rc << " failed (see the codes in the test)";

  // wanctl as nobody: the same rules through the real client (exit 4 = not found).
  // (Only where nobody may execute the build tree's wanctl.)
  bool can_exec = as_user(kNobody, kNogroup, [] { return ::access(WANCTL_EXE, X_OK) == 0 ? 0 : 1; }) == 0;
  if (!can_exec) {
    std::printf("note: nobody cannot execute %s; wanctl-as-nobody checks skipped\n", WANCTL_EXE);
    RawClient c(d.socket());
    c.hello();
    EXPECT_EQ(c.call({{"type", "cancel"}, {"job", root_job}})["type"], "cancelled");
    d.stop();
    return;
  }
  rc = as_user(kNobody, kNogroup, [&]() -> int {
    CmdResult r = d.wanctl({"cancel", root_job});
    return r.exit_code == 4 ? 0 : 20 + r.exit_code;
  });
  EXPECT_EQ(rc, 0);

  // A uid outside the socket's group cannot connect at all (exit 3, clear message).
  rc = as_user(65533, 65533, [&]() -> int {
    CmdResult r = d.wanctl({"ls"});
    if (r.err.find("permission denied") == std::string::npos) return 31;
    return r.exit_code == 3 ? 0 : 30;
  });
  EXPECT_EQ(rc, 0);

  // The root job was never cancelled; root (admin) sees both jobs.
  RawClient c(d.socket());
  c.hello();
  json r = c.call({{"type", "status"}, {"job", root_job}});
  EXPECT_FALSE(r["cancel_requested"].get<bool>());
  EXPECT_NE(r["state"], "cancelled");
  EXPECT_EQ(c.call({{"type", "list"}})["jobs"].size(), 2u);
  EXPECT_EQ(c.call({{"type", "cancel"}, {"job", root_job}})["type"], "cancelled");
  d.stop();
}

// Issue 15 items 5 and 9: users hold at most max_clients - admin_reserve connections and
// the next one gets too_many_clients (not internal), while an admin still gets in; `models`
// shows a user no server paths (an admin sees them).
TEST(Identity, UsersLeaveRoomForAdminsAndSeeNoServerPaths) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to fork a client as another uid";
  if (!::getgrgid(kNogroup)) GTEST_SKIP() << "no group 65534";
  DaemonFixture d(30);
  ::chmod(d.dir().c_str(), 0711);
  ::chmod((d.dir() / "run").c_str(), 0711);
  const auto cfg = d.dir() / "limits.json";
  std::ofstream(cfg) << "{\"max_clients\": 20}";  // admin_reserve 8: users get 12
  struct group* g = ::getgrgid(kNogroup);
  d.start({"--config", cfg.string(), "--socket-group", g->gr_name, "--admin-group", ""});
  const std::string model_dir = (d.dir() / "models").string();
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  std::string admin_hello, admin_models;
  std::thread admin([&] {
    char c;
    if (::read(ready[0], &c, 1) == 1) {  // the user holds every slot it may
      RawClient a(d.socket());
      admin_hello = a.hello().value("type", "");
      admin_models = a.call({{"type", "models"}}).dump();
    }
    (void)::write(go[1], "g", 1);
  });
  const int rc = as_user(kNobody, kNogroup, [&]() -> int {
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 12; ++i) {
      held.push_back(std::make_unique<RawClient>(d.socket()));
      if (held.back()->hello().value("type", "") != "hello") return 10;
    }
    {
      RawClient extra(d.socket());
      auto r = extra.receive();
      if (!r || r->value("code", "") != "too_many_clients") return 11;
    }
    json m = held[0]->call({{"type", "models"}});
    if (m.value("type", "") != "models" || m["models"].empty()) return 12;
    if (m.dump().find(model_dir) != std::string::npos) return 13;  // a server path shown to a user
    for (const auto& e : m["models"]) {
      if (!e.value("dir", "").empty()) return 14;
    }
    (void)::write(ready[1], "r", 1);
    char c;
    return ::read(go[0], &c, 1) == 1 ? 0 : 15;
  });
  (void)::write(ready[1], "x", 1);  // the child failed early: let the admin thread go on
  admin.join();
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  EXPECT_EQ(rc, 0) << "child check " << rc << " failed (see the codes in the test)";
  EXPECT_EQ(admin_hello, "hello") << "the admin was locked out by the user's connections";
  EXPECT_NE(admin_models.find(model_dir), std::string::npos) << "an admin sees where the models are: " << admin_models;
  d.stop();
}

// Runs fn as uid/gid in a child and returns what it wrote to the fd it was given (its answers,
// checked by the parent, where gtest's failures count).
std::string answers_as_user(uid_t uid, gid_t gid, const std::function<void(int fd)>& fn) {
  int p[2];
  EXPECT_EQ(::pipe(p), 0);
  const int rc = as_user(uid, gid, [&]() -> int {
    ::close(p[0]);
    fn(p[1]);
    ::close(p[1]);
    return 0;
  });
  ::close(p[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  EXPECT_EQ(rc, 0) << "the child failed: " << out;
  return out;
}

void put_line(int fd, const json& j) {
  const std::string line = j.dump() + "\n";
  (void)!::write(fd, line.data(), line.size());
}

std::vector<json> lines_as_json(const std::string& text) {
  std::vector<json> v;
  std::size_t start = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    v.push_back(json::parse(text.substr(start, nl - start), nullptr, false));
    start = nl + 1;
  }
  return v;
}

// Issue 15 / Note [Server paths] (daemon/job_view.h): a full disk is told to a user as its
// cause, without the state dir's paths ("write /var/lib/wand/checkpoints/j-1.ckpt.tmp: No
// space left on device" before): the refused submit, the paused job's status, its line in
// `list`, and its watch events. An admin sees the message whole, and the daemon's log has it.
TEST(Identity, DiskFullMessagesShowUsersTheCauseWithoutServerPaths) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to fork a client as another uid";
  if (!::getgrgid(kNogroup)) GTEST_SKIP() << "no group 65534";
  DaemonFixture d(30);
  ::chmod(d.dir().c_str(), 0711);
  ::chmod((d.dir() / "run").c_str(), 0711);
  const std::filesystem::path full = d.dir() / "disk-full";
  ::setenv("WAND_FAULT_DISK_FULL_FILE", full.c_str(), 1);
  const auto slow = d.make_fake_model("slow", 100);
  struct group* g = ::getgrgid(kNogroup);
  d.start({"--model", "slow=" + slow.string(), "--socket-group", g->gr_name, "--admin-group", ""});
  ::unsetenv("WAND_FAULT_DISK_FULL_FILE");  // the daemon has it; nothing else here needs it
  const std::string state = d.state_dir().string();
  json job = fake_job(4, 40);
  job["model"] = "slow";
  const std::string submitted = answers_as_user(kNobody, kNogroup, [&](int fd) {
    RawClient c(d.socket());
    c.hello();
    put_line(fd, c.call({{"type", "submit"}, {"job", job}}));
  });
  const json sub = json::parse(submitted.substr(0, submitted.find('\n')), nullptr, false);
  ASSERT_EQ(sub.value("type", ""), "submitted") << submitted;
  const std::string id = sub["id"];
  watch_until(d, id, [](const json& j) { return j.value("step", 0) >= 2; });
  std::ofstream(full) << "";  // the disk is full from now on
  const json paused = watch_until(d, id, [](const json& j) { return j.value("state", "") == "queued"; });
  ASSERT_EQ(paused.value("state", ""), "queued") << paused.dump();
  // The admin (this test runs as the daemon's uid) sees where.
  EXPECT_NE(paused.value("error", "").find(state), std::string::npos) << paused.dump();

  const std::vector<json> seen = lines_as_json(answers_as_user(kNobody, kNogroup, [&](int fd) {
    RawClient c(d.socket());
    c.hello();
    put_line(fd, c.call({{"type", "status"}, {"job", id}}));
    put_line(fd, c.call({{"type", "list"}}));
    put_line(fd, c.call({{"type", "submit"}, {"job", fake_job(6, 3)}}));
    put_line(fd, c.call({{"type", "cancel"}, {"job", "j-99"}}));  // not found: no write needed
    c.send_json({{"type", "watch"}, {"job", id}});
    put_line(fd, c.receive().value_or(json()));  // the first event: the job as it is now
    RawClient t(d.socket());
    t.hello();
    put_line(fd, t.call({{"type", "tiers"}}));  // the spool (under the state dir) without its path
  }));
  ASSERT_EQ(seen.size(), 6u);
  const json& status = seen[0];
  EXPECT_EQ(status.value("state", ""), "queued") << status.dump();
  const std::string error = status.value("error", "");
  EXPECT_NE(error.find("waiting for disk space"), std::string::npos) << error;
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << "the cause: " << error;
  EXPECT_NE(error.find("last checkpoint"), std::string::npos) << "what happens next: " << error;
  ASSERT_EQ(seen[1].value("jobs", json::array()).size(), 1u) << seen[1].dump();
  EXPECT_EQ(seen[1]["jobs"][0].value("error", ""), error) << "list says the same";
  const json& refused = seen[2];
  EXPECT_EQ(refused.value("code", ""), "disk_full") << refused.dump();
  EXPECT_NE(refused.value("message", "").find("No space left on device"), std::string::npos) << refused.dump();
  EXPECT_NE(refused.value("message", "").find("nothing was changed"), std::string::npos) << refused.dump();
  EXPECT_EQ(seen[4].value("job", json()).value("error", ""), error) << "watch says the same: " << seen[4].dump();
  EXPECT_NE(seen[5].dump().find("<spool>/wand-spool-"), std::string::npos) << "the spool, by its label: " << seen[5].dump();
  for (const json& j : seen) {
    const std::string text = j.dump();
    EXPECT_EQ(text.find(d.dir().string()), std::string::npos) << "a server path shown to a user: " << text;
    EXPECT_EQ(text.find(".ckpt"), std::string::npos) << "a state-dir file shown to a user: " << text;
    EXPECT_EQ(text.find("journal"), std::string::npos) << "a state-dir file shown to a user: " << text;
  }
  // The daemon's log has the whole message for admins.
  const std::string log = d.log();
  const std::size_t why = log.find("why=\"waiting for disk space: ");
  ASSERT_NE(why, std::string::npos) << log;
  const std::string line = log.substr(why, log.find('\n', why) - why);
  EXPECT_NE(line.find(state + "/"), std::string::npos) << line;
  std::filesystem::remove(full);
  const json done = watch_until(d, id, [](const json&) { return false; });
  EXPECT_EQ(done.value("state", ""), "done") << done.dump();
  d.stop();
}

}  // namespace
}  // namespace wand::test
