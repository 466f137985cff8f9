// systemd integration: READY/STATUS through NOTIFY_SOCKET (the harness waits for
// READY=1 on every start), socket activation through LISTEN_FDS, and SIGHUP reload.
#include <fstream>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

using nlohmann::json;

TEST(Systemd, SocketActivationServesTheInheritedSocketAndLeavesItInPlace) {
  DaemonFixture d(1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, d.socket().c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  d.start_socket_activated(fd);
  // READY came with a STATUS line describing the queue.
  bool status = false;
  for (const auto& n : d.notifications()) {
    status = status || (n.find("READY=1") != std::string::npos && n.find("STATUS=queued=0") != std::string::npos);
  }
  EXPECT_TRUE(status);
  CmdResult r = d.wanctl({"models", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err << d.log();
  EXPECT_EQ(r.json()["models"][0]["name"], "fake");
  d.stop();
  // The socket belongs to systemd (wand.socket): wand must not unlink it.
  EXPECT_TRUE(std::filesystem::exists(d.socket()));
  ::close(fd);
}

TEST(Systemd, SighupReloadsModelsFromTheConfigFile) {
  DaemonFixture d(1);
  auto second = d.make_fake_model("second", 1);
  auto cfg = d.dir() / "wand.json";
  std::ofstream(cfg) << R"({"models": {}, "log_level": "info"})";
  d.start({"--config", cfg.string()});
  EXPECT_EQ(d.wanctl({"models", "--json"}).json()["models"].size(), 1u);  // the --model flag
  std::ofstream(cfg) << json{{"models", {{"second", second.string()}}}}.dump();
  d.reload();
  json models = d.wanctl({"models", "--json"}).json()["models"];
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[1]["name"], "second");
  // A broken file on reload keeps the running configuration.
  std::ofstream(cfg) << R"({"models": 5})";
  d.reload();
  EXPECT_EQ(d.wanctl({"models", "--json"}).json()["models"].size(), 2u);
  EXPECT_NE(d.log().find("reload failed"), std::string::npos);
  d.stop();
}

}  // namespace
}  // namespace wand::test
