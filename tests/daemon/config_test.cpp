// Configuration: every file in configs/ validates; bad values fail naming the
// field; flags override the file.
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "tests/scheduler/test_dir.h"

namespace wand::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(Config, EveryShippedConfigValidates) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(WAND_SOURCE_DIR) / "configs")) {
    if (e.path().extension() != ".json") continue;
    ++n;
    SCOPED_TRACE(e.path().string());
    DaemonConfig c;
    ASSERT_NO_THROW(c = load_config_file(e.path()));
    // The examples set their tiers; the default file leaves them to the machine (Note [Auto memory]).
    EXPECT_TRUE(!c.memory.is_null() || (c.memory_mode == "auto" && e.path().filename() == "wand.json"))
        << c.memory_mode;
    EXPECT_TRUE(config_warnings(c).empty()) << config_warnings(c).front();
    EXPECT_FALSE(c.socket_path.empty());
  }
  EXPECT_GE(n, 5);  // the default and the four examples
}

TEST(Config, MixedExampleKeepsPerDeviceBudgets) {
  DaemonConfig c = load_config_file(fs::path(WAND_SOURCE_DIR) / "configs/examples/mixed-24-12-80gb.json");
  ASSERT_EQ(c.memory["devices"].size(), 3u);
  EXPECT_EQ(c.memory["devices"][1]["bytes"], "4GiB");
  EXPECT_EQ(c.memory["devices"][1]["budget"], "11GiB");
  const auto b = card_budgets(c);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[2].budget_bytes, 78ull << 30);
}

void expect_config_error(const json& j, const std::string& needle) {
  try {
    parse_config(j, "test.json");
    ADD_FAILURE() << "accepted " << j.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << e.what();
  }
}

TEST(Config, ErrorsNameTheField) {
  expect_config_error({{"socket", {{"path", "rel.sock"}}}}, "socket.path");
  expect_config_error({{"socket", {{"mode", "0999"}}}}, "socket.mode");
  expect_config_error({{"socket", {{"colour", "blue"}}}}, "socket.colour");
  expect_config_error({{"state_dir", 5}}, "state_dir");
  expect_config_error({{"log_level", "loud"}}, "log_level");
  expect_config_error({{"max_message_bytes", 12}}, "max_message_bytes");
  expect_config_error({{"models", {{"tiny", 3}}}}, "models.tiny");
  expect_config_error({{"modles", json::object()}}, "modles");
  expect_config_error({{"memory", {{"host", {{"bytes", "lots"}}}}}}, "host.bytes");
  expect_config_error(json::parse(R"({"memory": {"host": {"bytes": 1}, "devices": [{"index": 0}]}})"),
                      "devices[0].bytes");
  expect_config_error(json::array(), "top level");
}

TEST(Config, ExecutorParallelIsAutoOffOrAStrategyOfSeveralCards) {
  EXPECT_EQ(parse_config(json::object(), "t").executor.parallel, "auto");
  for (const char* v : {"auto", "off", "cfg-parallel", "ulysses-2", "ulysses-3", "cfg2xulysses-2"}) {
    SCOPED_TRACE(v);
    const DaemonConfig c = parse_config({{"executor", {{"parallel", v}}}}, "t");
    EXPECT_EQ(c.executor.parallel, v);
    EXPECT_EQ(parse_config(config_to_json(c), "again").executor.parallel, v);  // --check-config round trip
  }
  for (const char* v : {"fast", "single", "ulysses-0", "ulysses-", "cfg2xulysses-x", "Auto", ""}) {
    SCOPED_TRACE(v);
    try {
      parse_config({{"executor", {{"parallel", v}}}}, "t.json");
      ADD_FAILURE() << "accepted executor.parallel '" << v << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig);
      EXPECT_NE(std::string(e.what()).find("executor.parallel"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("t.json"), std::string::npos) << e.what();
    }
  }
  expect_config_error({{"executor", {{"parallel", 2}}}}, "executor.parallel");
  // A change is an executor change (restart to apply).
  ExecutorConfig a, b;
  b.parallel = "off";
  EXPECT_NE(a, b);
}

TEST(Config, CommentsAndUnderscoreKeysAreIgnored) {
  test::TempDir dir;
  auto f = dir.path() / "c.json";
  std::ofstream(f) << "{\n // a comment\n \"_comment\": \"x\", /* more */ \"state_dir\": \"/srv/wand\"}\n";
  DaemonConfig c = load_config_file(f);
  EXPECT_EQ(c.state_dir, "/srv/wand");
}

TEST(Config, FlagsOverrideTheFile) {
  test::TempDir dir;
  auto f = dir.path() / "c.json";
  std::ofstream(f) << R"({"socket": {"path": "/run/x.sock"}, "state_dir": "/a", "models": {"m": "/m1"}})";
  DaemonOptions o;
  o.config_file = f;
  o.flags.socket_path = "/tmp/y.sock";
  o.flags.models["n"] = "/n1";
  o.flags.models["m"] = "/m2";
  DaemonConfig c = effective_config(o);
  EXPECT_EQ(c.socket_path, "/tmp/y.sock");
  EXPECT_EQ(c.state_dir, "/a");
  EXPECT_EQ(c.models.at("m"), "/m2");
  EXPECT_EQ(c.models.at("n"), "/n1");
  o.flags.log_level = "chatty";
  EXPECT_THROW(effective_config(o), Error);
}

}  // namespace
}  // namespace wand::daemon
