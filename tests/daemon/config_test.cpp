// Configuration: every file in configs/ validates; bad values fail naming the
// field; flags override the file.
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/pipelines.h"
#include "memory/memory_pool.h"
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
    EXPECT_TRUE(!c.memory().is_null() || (c.memory_mode == "auto" && e.path().filename() == "wand.json"))
        << c.memory_mode;
    EXPECT_TRUE(config_warnings(c).empty()) << config_warnings(c).front();
    EXPECT_FALSE(c.socket_path.empty());
  }
  EXPECT_GE(n, 5);  // the default and the four examples
}

TEST(Config, MixedExampleKeepsPerDeviceBudgets) {
  DaemonConfig c = load_config_file(fs::path(WAND_SOURCE_DIR) / "configs/examples/mixed-24-12-80gb.json");
  ASSERT_EQ(c.memory()["devices"].size(), 3u);
  EXPECT_EQ(c.memory()["devices"][1]["bytes"], "4GiB");
  EXPECT_EQ(c.memory()["devices"][1]["budget"], "11GiB");
  const auto b = card_budgets(c);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[2].budget_bytes, 78ull << 30);
}

// Note [One memory section]: the JSON and its parsed form are set together, by one setter.
TEST(Config, TheMemorySectionIsParsedOnceAndKeptWithItsJson) {
  DaemonConfig c = parse_config({{"memory", {{"host", {{"bytes", "2GiB"}}},
                                             {"devices", {{{"index", 3}, {"bytes", "1GiB"}, {"budget", "5GiB"}}}}}}},
                                "t.json");
  ASSERT_NE(c.pool_config(), nullptr);
  EXPECT_EQ(c.pool_config()->host_bytes, 2ull << 30);
  ASSERT_EQ(c.pool_config()->devices.size(), 1u);
  EXPECT_EQ(c.pool_config()->devices[0].index, 3);
  EXPECT_EQ(c.memory()["devices"][0]["budget"], "5GiB");
  // A changed section: both forms follow.
  json m = c.memory();
  m["host"]["bytes"] = "3GiB";
  c.set_memory(m);
  EXPECT_EQ(c.pool_config()->host_bytes, 3ull << 30);
  EXPECT_EQ(c.memory()["host"]["bytes"], "3GiB");
  // A bad one is refused naming the field, and changes neither.
  m["devices"][0]["bytes"] = "lots";
  try {
    c.set_memory(m);
    ADD_FAILURE() << "accepted " << m.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("bytes"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.memory()["devices"][0]["bytes"], "1GiB");
  EXPECT_EQ(c.pool_config()->devices[0].bytes, 1ull << 30);
  // null: no section, no pool.
  c.set_memory(nullptr);
  EXPECT_TRUE(c.memory().is_null());
  EXPECT_EQ(c.pool_config(), nullptr);
  EXPECT_TRUE(card_budgets(c).empty());
  // "auto" and "off" have no section until the daemon resolves one.
  EXPECT_EQ(parse_config({{"memory", "off"}}, "t.json").pool_config(), nullptr);
  EXPECT_EQ(parse_config(json::object(), "t.json").pool_config(), nullptr);
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

// The context the `wand` executable registers the streamed Wan factory with (daemon/main.cpp
// -> sched::register_wan_pipeline): the executor section, and every card by its index with its
// tier and whole-card budget (Note [Daemon slots]); a card without a budget keeps
// executor.device_budget.
TEST(Config, TheWanStreamContextCarriesEveryCardsTierAndBudget) {
  test::TempDir tmp;
  const json pj = {{"host", {{"bytes", 8ull << 20}, {"pinned", false}}},
                   {"devices", json::array({{{"index", 0}, {"bytes", 2ull << 20}, {"backend", "cpu"}},
                                            {{"index", 1}, {"bytes", 2ull << 20}, {"backend", "cpu"}}})},
                   {"io", {{"engine", "psync"}}}};
  memory::MemoryPool pool(memory::PoolConfig::from_json(pj));
  PipelineServices s;
  EXPECT_THROW(wan_stream_context(s), Error);  // no pool: nothing to stream through
  s.pool = &pool;
  const std::vector<int> tiers = pool.device_tiers();
  ASSERT_EQ(tiers.size(), 2u);
  s.device_tier = tiers[0];
  s.executor.device_budget = 11ull << 30;
  s.executor.context_bytes = 600ull << 20;
  s.executor.window = 3ull << 20;
  s.executor.chunk_tokens = 4096;
  s.executor.run_dtype = "fp32";
  s.pack_dir = tmp.path().string();
  s.devices = {{0, tiers[0], -1, "cpu:0", 23ull << 30}, {1, tiers[1], -1, "cpu:1", 0}};
  const sched::WanStreamContext c = wan_stream_context(s);
  EXPECT_EQ(c.pool, &pool);
  EXPECT_EQ(c.device_tier, tiers[0]);
  EXPECT_EQ(c.pack_dir, tmp.path().string());
  EXPECT_EQ(c.run_dtype, "fp32");
  EXPECT_EQ(c.window_bytes, 3ull << 20);
  EXPECT_EQ(c.chunk_tokens, 4096);
  EXPECT_EQ(c.budget.budget_bytes, 11ull << 30);
  EXPECT_EQ(c.budget.context_bytes, 600ull << 20);
  EXPECT_EQ(c.stores, nullptr);  // register_wan_pipeline makes the one shared cache
  ASSERT_EQ(c.cards.size(), 2u);
  EXPECT_EQ(c.cards.at(0).device_tier, tiers[0]);
  EXPECT_EQ(c.cards.at(0).budget.budget_bytes, 23ull << 30);  // its own
  EXPECT_EQ(c.cards.at(1).device_tier, tiers[1]);
  EXPECT_EQ(c.cards.at(1).budget.budget_bytes, 11ull << 30);  // executor.device_budget
  EXPECT_EQ(c.cards.at(1).budget.context_bytes, 600ull << 20);
  EXPECT_EQ(c.cards.at(1).cuda_device, -1);
}

}  // namespace
}  // namespace wand::daemon
