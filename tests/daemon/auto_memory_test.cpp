// Note [Card budget] and Note [Auto memory]: where each card's budget comes from, what
// `wand --check-config` warns about, the memory section a daemon without one sizes from the
// machine (stand-in GPUs, MemAvailable, the spool's free space), and a daemon started that
// way: its spool made under state_dir, `tiers` marking every tier "source": "auto", `plan`
// answering. A configured spool directory that does not exist is made.
#include <atomic>
#include <chrono>
#include <optional>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "ctl/client.h"
#include "daemon/auto_memory.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "memory/pool_config.h"
#include "scheduler/plan/model_shape.h"
#include "tests/scheduler/plan/model_dir_writer.h"
#include "tests/scheduler/test_dir.h"

namespace wand::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr std::uint64_t GiB = 1ull << 30;
constexpr std::uint64_t MiB = 1ull << 20;

DaemonConfig with_memory(const char* memory, const char* executor = "{}") {
  return parse_config({{"memory", json::parse(memory)}, {"executor", json::parse(executor)}}, "t.json");
}

TEST(CardBudget, PerCardBudgetThenExecutorBudgetThenNone) {
  DaemonConfig c = with_memory(R"({"host": {"bytes": "1GiB"},
      "devices": [{"index": 0, "bytes": "10GiB", "budget": "23GiB"}, {"index": 1, "bytes": "4GiB"}]})");
  auto b = card_budgets(c);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].budget_bytes, 23 * GiB);
  EXPECT_EQ(b[0].tier_bytes, 10 * GiB);
  EXPECT_EQ(b[0].source, "memory.devices[].budget");
  EXPECT_EQ(b[1].budget_bytes, 0u);
  c.executor.device_budget = 11 * GiB;  // every card without its own
  b = card_budgets(c);
  EXPECT_EQ(b[0].budget_bytes, 23 * GiB);
  EXPECT_EQ(b[1].budget_bytes, 11 * GiB);
  EXPECT_EQ(b[1].source, "executor.device_budget");
  // The budget survives --check-config's round trip.
  EXPECT_EQ(card_budgets(parse_config(config_to_json(c), "again"))[0].budget_bytes, 23 * GiB);
}

TEST(CardBudget, CheckConfigWarnsAboutATierWithoutBudgetOrRoom) {
  // No budget at all.
  auto w = config_warnings(with_memory(R"({"host": {"bytes": "1GiB"}, "devices": [{"index": 0, "bytes": "22GiB"}]})"));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("memory.devices[0] (device 0)"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("no card budget"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("budget"), std::string::npos) << w[0];
  // A CPU tier (host memory standing in for a card, the tests) is not warned about.
  EXPECT_TRUE(config_warnings(with_memory(R"({"host": {"bytes": "1GiB"},
      "devices": [{"index": 0, "bytes": "2MiB", "backend": "cpu"}]})")).empty());
  // A tier that leaves no activation room beside the context.
  w = config_warnings(with_memory(R"({"host": {"bytes": "1GiB"}, "devices": [{"index": 0, "bytes": "22.5GiB"}]})",
                                  R"({"device_budget": "23GiB", "context_bytes": "600MiB"})"));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("no activation room"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("executor.device_budget"), std::string::npos) << w[0];
  // Little room.
  w = config_warnings(with_memory(R"({"host": {"bytes": "1GiB"},
      "devices": [{"index": 0, "bytes": "21GiB", "budget": "23GiB"}]})"));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("only"), std::string::npos) << w[0];
  // A tier as big as the card.
  w = config_warnings(with_memory(R"({"host": {"bytes": "1GiB"},
      "devices": [{"index": 0, "bytes": "24GiB", "budget": "23GiB"}]})"));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("not smaller than the card budget"), std::string::npos) << w[0];
  // Room enough: nothing to say.
  EXPECT_TRUE(config_warnings(with_memory(R"({"host": {"bytes": "1GiB"},
      "devices": [{"index": 0, "bytes": "10GiB", "budget": "23GiB"}]})")).empty());
}

TEST(CardBudget, MemoryIsAutoByDefaultOffOrASection) {
  EXPECT_EQ(parse_config(json::object(), "t").memory_mode, "auto");
  EXPECT_EQ(parse_config({{"memory", "auto"}}, "t").memory_mode, "auto");
  const DaemonConfig off = parse_config({{"memory", "off"}}, "t");
  EXPECT_EQ(off.memory_mode, "off");
  EXPECT_EQ(parse_config(config_to_json(off), "again").memory_mode, "off");
  EXPECT_EQ(with_memory(R"({"host": {"bytes": "1GiB"}})").memory_mode, "config");
  EXPECT_THROW(parse_config({{"memory", "lots"}}, "t"), Error);
}

ModelNeed a14b() {
  ModelNeed m;
  m.name = "i2v-A14B";
  m.blocks_bytes = 56223088640ull;  // 80 blocks of 702,788,608 bytes (bf16)
  m.max_block_bytes = 702788608ull;
  m.host_bytes = 56223088640ull + 930877696ull + 11361820672ull;
  return m;
}

TEST(AutoMemory, EachGpuGetsItsBudgetAndATierThatLeavesTheActivationReserve) {
  DaemonConfig cfg = parse_config({{"state_dir", "/srv/wand"}}, "t");
  MachineFacts f;
  f.gpus = {{0, 25757220864ull, 0, "RTX 4090"}, {1, 85017493504ull, 0, "H100"}};  // 23.99 and 79.18 GiB
  f.gpu_source = "cuda";
  f.mem_available_bytes = 120 * GiB;
  f.spool_free_bytes = 500 * GiB;
  const ResolvedMemory r = resolve_memory(cfg, f, {a14b()});
  EXPECT_EQ(r.mode, "auto");
  const memory::PoolConfig pc = memory::PoolConfig::from_json(r.memory);
  ASSERT_EQ(pc.devices.size(), 2u);
  const std::uint64_t context = 512 * MiB;  // the planner's default
  // 24 GB: budget = total - 1 GiB; tier = budget - context - 11 GiB (2 MiB grain).
  EXPECT_EQ(pc.devices[0].budget_bytes, 25757220864ull - kAutoDeviceHeadroom);
  EXPECT_EQ(pc.devices[0].bytes, (pc.devices[0].budget_bytes - context - kAutoActivationReserve) / (2 * MiB) * (2 * MiB));
  EXPECT_GE(pc.devices[0].budget_bytes - context - pc.devices[0].bytes, kAutoActivationReserve);
  // 80 GB: the tier holds every block of the model, no more.
  EXPECT_EQ(pc.devices[1].budget_bytes, 85017493504ull - kAutoDeviceHeadroom);
  EXPECT_EQ(pc.devices[1].bytes, (a14b().blocks_bytes + 2 * MiB - 1) / (2 * MiB) * (2 * MiB));
  // Host: what the model needs (below MemAvailable less the headroom), page-locked for CUDA.
  EXPECT_EQ(pc.host_bytes, (a14b().host_bytes + kAutoHostSlack) / 4096 * 4096);
  EXPECT_TRUE(pc.host_pinned);
  // The spool under state_dir, bounded.
  ASSERT_TRUE(pc.disk.has_value());
  EXPECT_EQ(pc.disk->dir, "/srv/wand/spool");
  EXPECT_EQ(pc.disk->bytes, kAutoSpoolMax);
  // The card budgets are the auto ones (Note [Card budget] 3.), and every line names its numbers.
  cfg.set_memory(r.memory);
  const auto b = card_budgets(cfg);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_NE(b[0].source.find("auto"), std::string::npos) << b[0].source;
  EXPECT_TRUE(config_warnings(cfg).empty());
  ASSERT_GE(r.lines.size(), 4u);
  EXPECT_NE(r.lines[0].find("RTX 4090"), std::string::npos) << r.lines[0];
  EXPECT_NE(r.lines[0].find("card budget"), std::string::npos) << r.lines[0];
}

TEST(AutoMemory, SmallMachinesAndCpuBuilds) {
  const DaemonConfig cfg = parse_config({{"state_dir", "/srv/wand"}}, "t");
  MachineFacts f;
  f.gpu_source = "none: built without CUDA";
  f.mem_available_bytes = 16 * GiB;
  f.spool_free_bytes = 1 * GiB;
  // No GPU: no device tier; host = MemAvailable less max(8 GiB, a quarter), pageable.
  ResolvedMemory r = resolve_memory(cfg, f, {a14b()});
  memory::PoolConfig pc = memory::PoolConfig::from_json(r.memory);
  EXPECT_TRUE(pc.devices.empty());
  EXPECT_EQ(pc.host_bytes, 8 * GiB);
  EXPECT_FALSE(pc.host_pinned);
  ASSERT_TRUE(pc.disk.has_value());
  EXPECT_EQ(pc.disk->bytes, 256 * MiB);  // a quarter of the free space
  // Too little free space: no spool.
  f.spool_free_bytes = 100 * MiB;
  r = resolve_memory(cfg, f, {});
  pc = memory::PoolConfig::from_json(r.memory);
  EXPECT_FALSE(pc.disk.has_value());
  EXPECT_EQ(pc.host_bytes, kAutoHostSlack);  // no Wan model: the smallest host tier
  // A card too small for a tier, and GPUs without a Wan model: no device tier, said.
  f.gpus = {{0, 3 * GiB, 0, "small"}};
  f.gpu_source = "test";
  r = resolve_memory(cfg, f, {a14b()});
  EXPECT_TRUE(memory::PoolConfig::from_json(r.memory).devices.empty());
  bool said = false;
  for (const auto& l : r.lines) said = said || l.find("no device tier") != std::string::npos;
  EXPECT_TRUE(said);
  f.gpus = {{0, 24 * GiB, 0, "big"}};
  r = resolve_memory(cfg, f, {});
  EXPECT_TRUE(memory::PoolConfig::from_json(r.memory).devices.empty());
}

TEST(AutoMemory, AConfiguredCudaCardWithoutBudgetGetsItsTotalLessTheHeadroom) {
  DaemonConfig cfg = with_memory(R"({"host": {"bytes": "1GiB"},
      "devices": [{"index": 0, "bytes": "10GiB"}, {"index": 1, "bytes": "2MiB", "backend": "cpu"}]})");
  MachineFacts f;
  f.gpus = {{0, 24 * GiB, 0, "card"}, {1, 24 * GiB, 0, "card"}};
  f.gpu_source = "cuda";
  const ResolvedMemory r = resolve_memory(cfg, f, {});
  EXPECT_EQ(r.mode, "config");
  cfg.set_memory(r.memory);
  const auto b = card_budgets(cfg);
  EXPECT_EQ(b[0].budget_bytes, 23 * GiB);
  EXPECT_NE(b[0].source.find("auto"), std::string::npos);
  EXPECT_EQ(b[1].budget_bytes, 0u);  // a CPU tier is not that card
  ASSERT_EQ(r.lines.size(), 1u);
  // "off": no pool.
  EXPECT_TRUE(resolve_memory(parse_config({{"memory", "off"}}, "t"), f, {}).memory.is_null());
}

TEST(AutoMemory, MachineProbes) {
  test::TempDir tmp;
  std::ofstream(tmp.path() / "meminfo") << "MemTotal:       65536000 kB\nMemFree:  100 kB\nMemAvailable:   1048576 kB\n";
  EXPECT_EQ(mem_available_bytes(tmp.path() / "meminfo"), 1024ull * MiB);
  std::ofstream(tmp.path() / "bad") << "MemTotal: 1 kB\n";
  EXPECT_EQ(mem_available_bytes(tmp.path() / "bad"), 0u);
  EXPECT_GT(mem_available_bytes(), 0u);  // this machine's
  // A directory that does not exist yet: its filesystem's free space.
  EXPECT_GT(filesystem_free_bytes(tmp.path() / "state" / "spool"), 0u);
  EXPECT_EQ(filesystem_free_bytes(tmp.path() / "state" / "spool"), filesystem_free_bytes(tmp.path()));
}

// A daemon in this process (Daemon::run on a thread), stopped by a shutdown request.
class InProcessDaemon {
 public:
  explicit InProcessDaemon(DaemonOptions o) : socket_(*o.flags.socket_path) {
    thread_ = std::thread([this, o = std::move(o)]() mutable {
      try {
        rc_ = Daemon(std::move(o)).run();
      } catch (const std::exception& e) {
        error_ = e.what();
        rc_ = -1;
      }
    });
  }
  ~InProcessDaemon() { stop(); }
  // Connects (waits up to 20 s for the socket); nullopt when the daemon died.
  std::optional<ctl::Client> client() {
    for (int i = 0; i < 400 && rc_ == -2; ++i) {
      try {
        return ctl::Client::connect(socket_);
      } catch (const ctl::ClientError&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    return std::nullopt;
  }
  int stop() {
    if (thread_.joinable()) {
      if (rc_ == -2) {
        if (auto c = client()) c->call(proto::Shutdown{});
      }
      thread_.join();
    }
    return rc_;
  }
  const std::string& error() const { return error_; }

 private:
  std::string socket_;
  std::thread thread_;
  std::atomic<int> rc_{-2};  // -2: running
  std::string error_;
};

DaemonOptions options_in(const fs::path& dir) {
  DaemonOptions o;
  o.flags.socket_path = (dir / "wand.sock").string();
  o.flags.state_dir = (dir / "state").string();
  o.pool_deps = [] { return memory::PoolDeps{}; };  // CPU tiers stand in for the cards
  o.register_pipelines = [](sched::PipelineRegistry& registry, const PipelineServices&) {
    sched::PipelineFactory f;  // plans Wan layouts; never asked to run a job here
    f.name = "wan-test";
    f.probe = [](const fs::path& d) { return fs::exists(d / "high_noise_model"); };
    f.make = [](const fs::path&) -> std::unique_ptr<sched::Pipeline> { return nullptr; };
    registry.add_factory(f);
  };
  return o;
}

TEST(AutoMemory, ADaemonWithoutMemorySectionSizesItsPoolAndPlans) {
  test::TempDir tmp;
  const fs::path model = tmp.path() / "tiny";
  sched::plan::test::write_model_dir(model, sched::plan::test::Geometry::tiny_t2v(), "BF16", 1 * MiB, 1 * MiB);
  DaemonOptions o = options_in(tmp.path());
  o.flags.models["tiny"] = model.string();
  o.gpu_probe = [] { return std::vector<GpuInfo>{{0, 24 * GiB, 0, "stand-in"}}; };
  o.gpu_source = "test";

  // What `wand --check-config` prints.
  const ConfigCheck check = check_config(o);
  EXPECT_EQ(check.config.memory_mode, "auto");
  ASSERT_FALSE(check.memory_lines.empty());
  EXPECT_NE(check.memory_lines[0].find("stand-in"), std::string::npos) << check.memory_lines[0];
  EXPECT_TRUE(check.warnings.empty());
  const json printed = check.to_json();
  EXPECT_EQ(printed["memory"], "auto");
  EXPECT_EQ(printed["_memory_resolved"]["mode"], "auto");
  EXPECT_EQ(parse_config(printed, "printed").memory_mode, "auto");  // what it prints reads back
  const memory::PoolConfig pc = *check.config.pool_config();
  ASSERT_EQ(pc.devices.size(), 1u);
  EXPECT_EQ(pc.devices[0].budget_bytes, 23 * GiB);
  EXPECT_EQ(pc.devices[0].bytes, 2 * MiB);  // every block of the tiny model

  ASSERT_FALSE(fs::exists(tmp.path() / "state" / "spool"));
  InProcessDaemon d(o);
  auto c = d.client();
  ASSERT_TRUE(c) << "daemon did not start: " << d.error();
  EXPECT_TRUE(fs::is_directory(tmp.path() / "state" / "spool"));  // made, not a reason to stop
  const proto::Response tr = c->call(proto::GetTiers{});
  const auto* tiers = std::get_if<proto::TiersReport>(&tr);
  ASSERT_TRUE(tiers);
  EXPECT_EQ(tiers->source, "pool");
  EXPECT_NE(tiers->note.find("sized from this machine"), std::string::npos) << tiers->note;
  int devices = 0;
  for (const auto& t : tiers->tiers) {
    EXPECT_EQ(t.value("source", std::string()), "auto") << t.dump();
    if (t.value("kind", std::string()) == "device") {
      ++devices;
      EXPECT_EQ(t.value("card_budget_bytes", std::uint64_t{0}), 23 * GiB) << t.dump();
    }
  }
  EXPECT_EQ(devices, 1);
  proto::GetPlan gp;
  gp.job.model = "tiny";
  gp.job.width = 128;
  gp.job.height = 128;
  gp.job.frames = 9;
  gp.job.steps = 4;
  const proto::Response pr = c->call(gp);
  const auto* plan = std::get_if<proto::PlanReport>(&pr);
  ASSERT_TRUE(plan);
  EXPECT_TRUE(plan->available) << plan->note;
  EXPECT_NE(plan->plan.value("budget_source", std::string()).find("auto"), std::string::npos) << plan->plan.dump();
  c.reset();
  EXPECT_EQ(d.stop(), 0) << d.error();
}

TEST(AutoMemory, AConfiguredSpoolDirectoryThatDoesNotExistIsMade) {
  test::TempDir tmp;
  DaemonOptions o = options_in(tmp.path());
  const fs::path spool = tmp.path() / "not" / "yet" / "spool";
  const json cfg = {{"memory",
                     {{"host", {{"bytes", "16MiB"}, {"pinned", false}}},
                      {"disk", {{"dir", spool.string()}, {"bytes", "8MiB"}}},
                      {"io", {{"engine", "psync"}}}}}};
  std::ofstream(tmp.path() / "wand.json") << cfg.dump();
  o.config_file = tmp.path() / "wand.json";
  InProcessDaemon d(o);
  auto c = d.client();
  ASSERT_TRUE(c) << "daemon did not start: " << d.error();
  EXPECT_TRUE(fs::is_directory(spool));
  const proto::Response tr = c->call(proto::GetTiers{});
  const auto* tiers = std::get_if<proto::TiersReport>(&tr);
  ASSERT_TRUE(tiers);
  for (const auto& t : tiers->tiers) EXPECT_EQ(t.value("source", std::string()), "config") << t.dump();
  c.reset();
  EXPECT_EQ(d.stop(), 0) << d.error();
}

// Note [Host tier need] (daemon/config.cpp): `wand --check-config` warns about a host tier
// below what a configured Wan model needs, with the planner's numbers (scheduler/plan), and
// the daemon still starts (a warning, never an error).
struct HostNeedFixture {
  test::TempDir tmp;
  fs::path model = tmp.path() / "a14b";
  std::uint64_t dit = 0;
  std::uint64_t t5 = 0;
  HostNeedFixture() {
    sched::plan::test::write_model_dir(model, sched::plan::test::Geometry::t2v_a14b(), "BF16",
                                       sched::plan::test::kT5Bytes, sched::plan::test::kVae21Bytes);
    const sched::plan::ModelShape m = sched::plan::model_shape_from_dir(model);
    for (std::size_t e = 0; e < m.experts.size(); ++e) dit += m.expert_run_bytes(e);
    t5 = m.t5_bytes;
  }
  json memory(const std::string& host) const {
    return json::parse(R"({"host": {"bytes": ")" + host +
                       R"("}, "devices": [{"index": 0, "bytes": "10GiB", "budget": "23GiB"}]})");
  }
  DaemonConfig config(const std::string& host) const {
    return parse_config({{"models", {{"a14b", model.string()}}}, {"memory", memory(host)}}, "t.json");
  }
};

// weights_dtype "fp8" (models.<name> as {"dir", "weights_dtype"}): the host need drops to the
// fp8 store's 27.1 GiB for both A14B experts, so a 32 GiB tier holds them and is not warned
// about, while the same tier is warned about for the bf16 store (53.2 GiB).
TEST(HostTierNeed, Fp8WeightsAreCountedAsTheStoreHoldsThem) {
  HostNeedFixture f;
  DaemonConfig bf16 = f.config("32GiB");
  EXPECT_EQ(config_warnings(bf16).size(), 1u);
  DaemonConfig fp8 = parse_config(
      {{"models", {{"a14b", {{"dir", f.model.string()}, {"weights_dtype", "fp8"}}}}}, {"memory", f.memory("32GiB")}},
      "t.json");
  EXPECT_EQ(fp8.models.at("a14b"), f.model.string());
  EXPECT_EQ(fp8.weights_of("a14b"), "fp8");
  const auto w = config_warnings(fp8);
  EXPECT_TRUE(w.empty()) << ::testing::PrintToString(w);
  // 16 GiB: warned, with the fp8 need in the message.
  fp8.set_memory(f.memory("16GiB"));
  const auto w16 = config_warnings(fp8);
  ASSERT_EQ(w16.size(), 1u) << ::testing::PrintToString(w16);
  EXPECT_NE(w16[0].find("fp8"), std::string::npos) << w16[0];
  // The entry round-trips through --check-config's JSON; a bad dtype names the field.
  EXPECT_EQ(parse_config(config_to_json(fp8), "again").weights_of("a14b"), "fp8");
  try {
    parse_config({{"models", {{"a14b", {{"dir", "/m"}, {"weights_dtype", "int4"}}}}}}, "t.json");
    ADD_FAILURE() << "int4 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("models.a14b.weights_dtype"), std::string::npos) << e.what();
  }
}

TEST(HostTierNeed, ATierBelowTheModelsDitIsWarnedAboutWithTheNumbers) {
  HostNeedFixture f;
  ASSERT_GT(f.dit, 40 * GiB);  // two experts of ~14B parameters in bf16
  ASSERT_LT(f.dit + f.t5, 96 * GiB);
  // 4 GiB: not even one expert fits beside the staging window: every step reads from disk.
  auto w = config_warnings(f.config("4GiB"));
  ASSERT_EQ(w.size(), 1u) << ::testing::PrintToString(w);
  EXPECT_NE(w[0].find("models.a14b (t2v-A14B)"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("memory.host.bytes"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find(format_bytes(4 * GiB)), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("needs " + format_bytes(f.dit)), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("every step re-reads"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("at least " + format_bytes(f.dit)), std::string::npos) << w[0];
  // One expert fits, both do not: the idle expert is re-read at every switch.
  w = config_warnings(f.config(std::to_string((f.dit / 2 + 4 * GiB) >> 20) + "MiB"));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("the idle expert is not held"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("per job"), std::string::npos) << w[0];
  // Below the planner's staging window no job of the model can run: the planner's message.
  w = config_warnings(f.config("512MiB"));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("too small to run any job"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("staging window"), std::string::npos) << w[0];
  // Room for the DiT and umT5: nothing to say.
  EXPECT_TRUE(config_warnings(f.config("96GiB")).empty())
      << ::testing::PrintToString(config_warnings(f.config("96GiB")));
  // No section yet ("auto" before the daemon resolves it) or no Wan model: nothing to check.
  EXPECT_TRUE(config_warnings(parse_config({{"models", {{"a14b", f.model.string()}}}}, "t.json")).empty());
  DaemonConfig missing = f.config("4GiB");
  missing.models = {{"gone", (f.tmp.path() / "nope").string()}};
  EXPECT_TRUE(config_warnings(missing).empty());  // the registry's check names a missing directory
}

TEST(HostTierNeed, CheckConfigPrintsTheWarningAndTheDaemonWouldStart) {
  HostNeedFixture f;
  const fs::path file = f.tmp.path() / "wand.json";
  std::ofstream(file) << json{{"models", {{"a14b", f.model.string()}}}, {"memory", f.memory("4GiB")}}.dump();
  DaemonOptions o = options_in(f.tmp.path());
  o.config_file = file;
  ConfigCheck check;
  ASSERT_NO_THROW(check = check_config(o));  // a warning, not a refusal
  ASSERT_EQ(check.warnings.size(), 1u);
  EXPECT_NE(check.warnings[0].find("models.a14b"), std::string::npos) << check.warnings[0];
  EXPECT_NE(check.warnings[0].find("memory.host.bytes"), std::string::npos) << check.warnings[0];
}

}  // namespace
}  // namespace wand::daemon
