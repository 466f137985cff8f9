// daemon/plan_service: the `plan` answer from the daemon's config, the registry's model dir
// and <state_dir>/calibration.json; and wanctl's table for it.
#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include "ctl/exit_codes.h"
#include "ctl/output.h"
#include "daemon/plan_service.h"
#include "tests/scheduler/plan/model_dir_writer.h"
#include "tests/scheduler/test_dir.h"

namespace wand::daemon {
namespace {

using nlohmann::json;

struct Fixture {
  wand::test::TempDir tmp;
  sched::PipelineRegistry registry;
  DaemonConfig cfg;
  sched::JobSpec spec;
  Fixture() {
    const auto dir = tmp.path() / "a14b";
    sched::plan::test::write_model_dir(dir, sched::plan::test::Geometry::t2v_a14b(), "BF16",
                                       sched::plan::test::kT5Bytes, sched::plan::test::kVae21Bytes);
    sched::PipelineFactory f;
    f.name = "wan-test";
    f.probe = [](const std::filesystem::path&) { return true; };
    f.make = [](const std::filesystem::path&) -> std::unique_ptr<sched::Pipeline> { return nullptr; };
    registry.add_factory(f);
    registry.add_model("a14b", dir);
    cfg.state_dir = (tmp.path() / "state").string();
    std::filesystem::create_directories(cfg.state_dir);
    spec.model = "a14b";
    spec.task = "t2v";
    spec.width = 832;
    spec.height = 480;
    spec.frames = 81;
    spec.steps = 40;
  }
  std::string print(const proto::PlanReport& r) {
    std::FILE* f = std::tmpfile();
    ctl::print_plan(f, r);
    std::rewind(f);
    std::string s;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) s.append(buf, n);
    std::fclose(f);
    return s;
  }
};

TEST(PlanService, OneDeviceGivesPlanV1WithDefaultCalibration) {
  Fixture fx;
  fx.cfg.set_memory(json::parse(R"({"host": {"bytes": "64GiB"}, "devices": [{"index": 0, "bytes": "22GiB"}]})"));
  const proto::PlanReport r = plan_report(fx.cfg, fx.registry, fx.spec);
  ASSERT_TRUE(r.available) << r.note;
  EXPECT_EQ(r.plan["version"], 1);
  EXPECT_EQ(r.plan["job"]["tokens"], 32760);
  EXPECT_EQ(r.plan["choice"]["strategy"], "single");
  EXPECT_EQ(r.plan["calibration"]["gemm_tflops"]["source"], "default");
  EXPECT_NE(r.plan["calibration_source"].get<std::string>().find("defaults"), std::string::npos);
  EXPECT_LE(r.plan["choice"]["peak_bytes"][0].get<std::uint64_t>(), 22ull << 30);
  const std::string text = fx.print(r);
  EXPECT_NE(text.find("STRATEGY"), std::string::npos) << text;
  EXPECT_NE(text.find("* single"), std::string::npos) << text;
  EXPECT_NE(text.find("device 0: peak"), std::string::npos) << text;
  EXPECT_NE(text.find("placeholders (not measured)"), std::string::npos) << text;
}

TEST(PlanService, SeveralDevicesGivePlanV2AndTheCalibrationFileIsRead) {
  Fixture fx;
  fx.cfg.set_memory(json::parse(R"({"host": {"bytes": "96GiB"},
      "devices": [{"index": 0, "bytes": "22GiB"}, {"index": 1, "bytes": "10GiB"}, {"index": 2, "bytes": "76GiB"}]})"));
  std::ofstream(calibration_path(fx.cfg)) << R"({"gemm_tflops": 700, "interconnect_gbps": 40})";
  const proto::PlanReport r = plan_report(fx.cfg, fx.registry, fx.spec);
  ASSERT_TRUE(r.available) << r.note;
  EXPECT_EQ(r.plan["version"], 2);
  EXPECT_EQ(r.plan["mode"], "latency");
  EXPECT_EQ(r.plan["calibration"]["gemm_tflops"]["value"], 700.0);
  EXPECT_EQ(r.plan["calibration"]["gemm_tflops"]["source"], "file " + calibration_path(fx.cfg).string());
  EXPECT_GE(r.plan["strategies"].size(), 5u);  // 3 singles, cfg-parallel, ulysses-2, ulysses-3
  const std::string text = fx.print(r);
  EXPECT_NE(text.find("ulysses-3"), std::string::npos) << text;
  EXPECT_NE(text.find("not divisible by 3"), std::string::npos) << text;

  // A bad calibration file: no plan, the message names the file.
  std::ofstream(calibration_path(fx.cfg)) << R"({"gemm_tflops": "fast"})";
  const proto::PlanReport bad = plan_report(fx.cfg, fx.registry, fx.spec);
  EXPECT_FALSE(bad.available);
  EXPECT_NE(bad.note.find("calibration.json"), std::string::npos) << bad.note;
}

TEST(PlanService, TheExecutorsWholeCardBudgetAndContextAreUsed) {
  Fixture fx;
  fx.cfg.set_memory(json::parse(R"({"host": {"bytes": "64GiB"},
      "devices": [{"index": 0, "bytes": "16GiB"}, {"index": 1, "bytes": "8GiB"}]})"));
  fx.cfg.executor.device_budget = 23ull << 30;
  fx.cfg.executor.context_bytes = 600ull << 20;
  const proto::PlanReport r = plan_report(fx.cfg, fx.registry, fx.spec);
  ASSERT_TRUE(r.available) << r.note;
  const auto& singles = r.plan["strategies"];
  ASSERT_GE(singles.size(), 2u);
  EXPECT_EQ(singles[0]["strategy"], "single");
  // Note [Card budget]: executor.device_budget is every card's budget (no card has its own);
  // the tiers are fixed parts of it (the whole tier is in the peak).
  for (const auto& c : r.plan["choice"]["cards"]) {
    const int d = c["device"];
    EXPECT_EQ(c["budget_bytes"].get<std::uint64_t>(), 23ull << 30);
    EXPECT_EQ(c["peak"]["context"].get<std::uint64_t>(), 600ull << 20);
    EXPECT_EQ(c["peak"]["weight_slots"].get<std::uint64_t>() + c["peak"]["resident_blocks"].get<std::uint64_t>(),
              d == 0 ? 16ull << 30 : 8ull << 30);
  }
  EXPECT_EQ(r.plan["calibration"]["context_bytes"]["source"], "config executor.context_bytes");
  EXPECT_NE(fx.print(r).find("(executor.device_budget)"), std::string::npos) << fx.print(r);

  // A card's own budget wins over executor.device_budget.
  json memory = fx.cfg.memory();
  memory["devices"][1]["budget"] = "15GiB";  // 8 GiB tier + context + non-block + a 720p step in chunks
  fx.cfg.set_memory(memory);  // Note [One memory section]: the parsed form follows
  const proto::PlanReport r2 = plan_report(fx.cfg, fx.registry, fx.spec);
  ASSERT_TRUE(r2.available) << r2.note;
  bool seen = false;
  for (const auto& row : r2.plan.at("strategies")) {
    if (row.at("strategy") != "single" || row.at("devices") != json::array({1})) continue;
    seen = true;
    ASSERT_TRUE(row.at("feasible").get<bool>()) << row.dump();
    EXPECT_LE(row.at("peak_bytes").at(0).get<std::uint64_t>(), 15ull << 30) << row.dump();
  }
  EXPECT_TRUE(seen);
  EXPECT_NE(r2.plan["budget_source"].get<std::string>().find("memory.devices[].budget"), std::string::npos);
}

TEST(PlanService, WithoutACardBudgetTheTierIsTakenForTheCardAndThePlanSaysSo) {
  Fixture fx;
  fx.cfg.set_memory(json::parse(R"({"host": {"bytes": "64GiB"}, "devices": [{"index": 0, "bytes": "22GiB"}]})"));
  fx.cfg.memory_mode = "config";
  const proto::PlanReport r = plan_report(fx.cfg, fx.registry, fx.spec);
  ASSERT_TRUE(r.available) << r.note;
  EXPECT_NE(r.plan["budget_source"].get<std::string>().find("no card budget"), std::string::npos);
  EXPECT_NE(fx.print(r).find("memory.devices[].budget)"), std::string::npos) << fx.print(r);
}

TEST(PlanService, MissingPiecesAreSaid) {
  Fixture fx;
  proto::PlanReport r = plan_report(fx.cfg, fx.registry, fx.spec);  // no memory section
  EXPECT_FALSE(r.available);
  EXPECT_NE(r.note.find("memory"), std::string::npos);
  EXPECT_EQ(ctl::plan_exit_code(r), ctl::kExitNoPlan);
  fx.cfg.set_memory(json::parse(R"({"host": {"bytes": "64GiB"}, "devices": [{"index": 0, "bytes": "512MiB"}]})"));
  r = plan_report(fx.cfg, fx.registry, fx.spec);
  EXPECT_FALSE(r.available);
  EXPECT_NE(r.note.find("fits no card"), std::string::npos) << r.note;
  // The card's reason names the budget; what to change: no tier fits a 512 MiB card.
  EXPECT_NE(r.plan["cards"][0]["reason"].get<std::string>().find("budget"), std::string::npos) << r.plan.dump();
  EXPECT_GT(r.plan["cards"][0]["min_budget_bytes"].get<std::uint64_t>(), 512ull << 20);
  EXPECT_NE(fx.print(r).find("it needs at least"), std::string::npos) << fx.print(r);
  EXPECT_EQ(ctl::plan_exit_code(r), ctl::kExitNoPlan);
  fx.spec.model = "nope";
  r = plan_report(fx.cfg, fx.registry, fx.spec);
  EXPECT_FALSE(r.available);
  EXPECT_NE(r.note.find("nope"), std::string::npos);
}

}  // namespace
}  // namespace wand::daemon
