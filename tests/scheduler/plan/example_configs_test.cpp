// The shipped examples (configs/examples/*.json) fit the jobs their comments name: each job of
// an example's "_jobs" list is planned against the real A14B / TI2V-5B geometry (header-only
// release layouts, model_dir_writer.h, built from ../shared/golden/real_configs.json) on every
// card alone (job-parallel) and by the daemon's plan answer, and the executor's own check at
// the job's start (Note [Streamed budget]: activation room = card budget - context - tier -
// non-block weights, the chunk chosen to fit it) accepts it. The old layout (22 GiB tiers, no
// card budget) is refused with what to change.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "ctl/exit_codes.h"
#include "ctl/output.h"
#include "daemon/config.h"
#include "daemon/plan_service.h"
#include "scheduler/exec/exec_budget.h"
#include "scheduler/plan/card_plan.h"
#include "tests/golden_dir.h"
#include "tests/scheduler/plan/model_dir_writer.h"
#include "tests/scheduler/test_dir.h"

namespace wand::daemon {
namespace {

namespace fs = std::filesystem;
namespace plan = sched::plan;
using nlohmann::json;

// The three release layouts, written once (sparse files: headers only).
class ExampleConfigs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path real = wand::test::golden_path("real_configs.json");
    if (!fs::exists(real)) return;
    std::ifstream in(real);
    const json rc = json::parse(in);
    tmp_ = new wand::test::TempDir();
    const auto& pc = rc.at("param_counts");
    struct Want {
      const char* key;
      const char* dir;
      std::uint64_t vae;
    } wants[] = {{"t2v-A14B (one expert)", "t2v", plan::test::kVae21Bytes},
                 {"i2v-A14B (one expert)", "i2v", plan::test::kVae21Bytes},
                 {"ti2v-5B", "ti2v", plan::test::kVae22Bytes}};
    for (const Want& w : wants) {
      const plan::test::Geometry g = plan::test::Geometry::from_config_json(pc.at(w.key).at("config_json"));
      // The layout is the real one: its tensors add up to the official parameter count.
      param_mismatch_ += g.params() == pc.at(w.key).at("params").get<std::uint64_t>()
                             ? ""
                             : std::string(w.key) + ": " + std::to_string(g.params()) + " params written, " +
                                   pc.at(w.key).at("params").dump() + " in real_configs.json; ";
      plan::test::write_model_dir(tmp_->path() / w.dir, g, "BF16", plan::test::kT5Bytes, w.vae);
    }
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override {
    WAND_REQUIRE_DATA(wand::test::golden_path("real_configs.json"));
    ASSERT_NE(tmp_, nullptr);
    ASSERT_TRUE(param_mismatch_.empty()) << param_mismatch_;
  }

  // A model name of the examples -> its header-only layout.
  static fs::path dir_for(const std::string& model) {
    if (model.find("ti2v") != std::string::npos) return tmp_->path() / "ti2v";
    if (model.find("i2v") != std::string::npos) return tmp_->path() / "i2v";
    return tmp_->path() / "t2v";
  }

  // "i2v-A14B 1280x720x81" -> a job spec of that model.
  static sched::JobSpec job(const std::string& text) {
    std::istringstream s(text);
    std::string model, size;
    s >> model >> size;
    sched::JobSpec spec;
    spec.model = model;
    spec.task = model.find("ti2v") != std::string::npos ? "ti2v" : model.find("i2v") != std::string::npos ? "i2v" : "t2v";
    char x1 = 0, x2 = 0;
    std::istringstream z(size);
    z >> spec.width >> x1 >> spec.height >> x2 >> spec.frames;
    spec.steps = 40;
    return spec;
  }

  struct Example {
    fs::path file;
    json raw;
    DaemonConfig cfg;
    sched::PipelineRegistry registry;
  };

  static std::unique_ptr<Example> load(const fs::path& file) {
    auto e = std::make_unique<Example>();
    e->file = file;
    std::ifstream in(file);
    e->raw = json::parse(in, nullptr, true, /*ignore_comments=*/true);
    e->cfg = load_config_file(file);
    e->cfg.state_dir = (tmp_->path() / "state").string();  // no calibration file: the defaults
    sched::PipelineFactory f;
    f.name = "wan-test";
    f.probe = [](const fs::path&) { return true; };
    f.make = [](const fs::path&) -> std::unique_ptr<sched::Pipeline> { return nullptr; };
    e->registry.add_factory(f);
    for (const auto& [name, dir] : e->cfg.models) e->registry.add_model(name, dir_for(name));
    return e;
  }

  // The job on one card with its fixed tier, as the planner and the executor see it.
  static void expect_card_runs(const Example& e, const plan::DeviceSpec& dev, const sched::JobSpec& spec) {
    SCOPED_TRACE("device " + std::to_string(dev.index) + ": " + spec.model + " " + std::to_string(spec.width) + "x" +
                 std::to_string(spec.height) + "x" + std::to_string(spec.frames));
    const plan::ModelShape shape = plan::model_shape_from_dir(dir_for(spec.model));
    const plan::Calibration cal = plan_calibration(e.cfg);
    ASSERT_GT(dev.budget_bytes, 0u) << "no card budget";
    ASSERT_GT(dev.tier_bytes, 0u) << "the tier must be fixed (memory.devices[].bytes)";
    const plan::JobGeometry g = plan::job_geometry(shape, spec);
    const plan::CardPlan p = plan::plan_card(shape, g, dev, cal, plan::CardWork{});
    ASSERT_TRUE(p.feasible) << p.reason;
    EXPECT_LE(p.peak.total(), dev.budget_bytes);
    EXPECT_EQ(p.peak.weight_slots + p.peak.resident_blocks, dev.tier_bytes);  // the whole tier is counted
    // The executor's check at the job's start (plan_card_job, scheduler/exec/streamed_dit.cpp):
    // room = budget - context - slots - non-block weights; the chunk is chosen to fit it.
    std::uint64_t nonblock = 0;
    for (std::size_t x = 0; x < shape.experts.size(); ++x) nonblock += shape.non_block_run_bytes(x);
    const std::uint64_t context = static_cast<std::uint64_t>(cal.context_bytes.value);
    ASSERT_GT(dev.budget_bytes, context + dev.tier_bytes + nonblock);
    const std::uint64_t room = dev.budget_bytes - context - dev.tier_bytes - nonblock;
    sched::exec::DitGeometry dg;
    dg.tokens = g.tokens;
    dg.dim = shape.dim;
    dg.ffn_dim = shape.ffn_dim;
    dg.text_len = shape.text_len;
    dg.run_bytes = shape.run_bytes;
    std::int64_t chunk = -1;
    ASSERT_NO_THROW(chunk = sched::exec::choose_chunk_tokens(dg, room)) << "room " << format_bytes(room);
    dg.chunk_tokens = chunk;
    EXPECT_LE(sched::exec::dit_activation_bytes(dg), room);
    // The device tier holds the prefetch window and the block being released.
    EXPECT_GE(dev.tier_bytes, 2 * shape.max_block_run_bytes());
  }

  static wand::test::TempDir* tmp_;
  static std::string param_mismatch_;
};

wand::test::TempDir* ExampleConfigs::tmp_ = nullptr;
std::string ExampleConfigs::param_mismatch_;

std::vector<fs::path> example_files() {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(fs::path(WAND_SOURCE_DIR) / "configs" / "examples")) {
    if (e.path().extension() == ".json") v.push_back(e.path());
  }
  std::sort(v.begin(), v.end());
  return v;
}

TEST_F(ExampleConfigs, EveryExampleRunsTheJobsItNamesOnEveryCard) {
  const auto files = example_files();
  ASSERT_GE(files.size(), 5u);
  int planned = 0;
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.filename().string());
    auto e = load(f);
    ASSERT_TRUE(e->raw.contains("_jobs")) << "an example names the jobs it is for (\"_jobs\")";
    EXPECT_TRUE(config_warnings(e->cfg).empty()) << config_warnings(e->cfg).front();
    const PlanMachine pm = plan_machine(e->cfg);
    const plan::MachineSpec& mc = pm.machine;
    ASSERT_FALSE(mc.devices.empty());
    EXPECT_EQ(pm.budget_source.find("no card budget"), std::string::npos) << pm.budget_source;
    auto check = [&](const std::vector<std::string>& jobs, const std::vector<int>& devices) {
      for (const std::string& text : jobs) {
        const sched::JobSpec spec = job(text);
        ASSERT_TRUE(e->cfg.models.count(spec.model)) << text << ": the example does not serve " << spec.model;
        for (const auto& d : mc.devices) {
          if (devices.empty() || std::find(devices.begin(), devices.end(), d.index) != devices.end()) {
            expect_card_runs(*e, d, spec);
          }
        }
        // The daemon's answer (`wanctl plan`, exit 0).
        const proto::PlanReport r = plan_report(e->cfg, e->registry, spec);
        ASSERT_TRUE(r.available) << text << ": " << r.note << " " << r.plan.dump();
        EXPECT_EQ(r.plan["fits"], true);
        EXPECT_EQ(ctl::plan_exit_code(r), ctl::kExitOk);
        if (std::getenv("WAND_PRINT_PLANS") != nullptr) {  // what docs/guide-24gb.md quotes
          std::printf("==== %s: wanctl plan %s\n", f.filename().string().c_str(), text.c_str());
          ctl::print_plan(stdout, r);
        }
        ++planned;
      }
    };
    check(e->raw["_jobs"].get<std::vector<std::string>>(), {});
    if (e->raw.contains("_jobs_big_cards")) {
      check(e->raw["_jobs_big_cards"]["jobs"].get<std::vector<std::string>>(),
            e->raw["_jobs_big_cards"]["devices"].get<std::vector<int>>());
    }
  }
  EXPECT_GE(planned, 10);
}

// The layout the 24 GB examples used to have (22 GiB tiers, no card budget) with the card's
// real 23 GiB: nothing fits 720p; the plan says per card why and which tier to set, wraps its
// lines, and `wanctl plan` exits kExitNoPlan. With the tier it recommends, the job plans.
TEST_F(ExampleConfigs, TheOldLayoutIsRefusedWithTheTierToSet) {
  auto e = load(fs::path(WAND_SOURCE_DIR) / "configs/examples/8x24gb.json");
  json devices = json::array();
  for (int i = 0; i < 8; ++i) devices.push_back({{"index", i}, {"bytes", "22GiB"}});
  json memory = e->cfg.memory();
  memory["devices"] = devices;
  e->cfg.set_memory(memory);
  // Without a card budget: warned about.
  const auto w = config_warnings(e->cfg);
  ASSERT_EQ(w.size(), 8u);
  EXPECT_NE(w[0].find("no card budget"), std::string::npos) << w[0];
  // With the card budget: the tier leaves too little room.
  e->cfg.executor.device_budget = 23ull << 30;
  const auto w2 = config_warnings(e->cfg);
  ASSERT_EQ(w2.size(), 8u);
  EXPECT_NE(w2[0].find("activation room"), std::string::npos) << w2[0];

  const sched::JobSpec spec = job("i2v-A14B 1280x720x81");
  const proto::PlanReport r = plan_report(e->cfg, e->registry, spec);
  ASSERT_FALSE(r.available) << r.plan.dump();
  EXPECT_NE(r.note.find("fits no card"), std::string::npos) << r.note;
  EXPECT_EQ(ctl::plan_exit_code(r), ctl::kExitNoPlan);
  ASSERT_EQ(r.plan["cards"].size(), 8u);
  const plan::ModelShape shape = plan::model_shape_from_dir(dir_for(spec.model));
  std::uint64_t tier = 0;
  for (const auto& c : r.plan["cards"]) {
    EXPECT_FALSE(c["fits"].get<bool>());
    tier = c["recommended_device_tier_bytes"].get<std::uint64_t>();
    EXPECT_GE(tier, 2 * shape.max_block_run_bytes());
    EXPECT_LE(tier, 12ull << 30);  // 23 GiB - context - non-block - 720p activations
    EXPECT_LE(c["peak_with_recommended_bytes"].get<std::uint64_t>(), 23ull << 30);
  }
  std::FILE* f = std::tmpfile();
  ctl::print_plan(f, r);
  std::rewind(f);
  std::string text;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) text.append(buf, n);
  std::fclose(f);
  EXPECT_NE(text.find("what to change"), std::string::npos) << text;
  EXPECT_NE(text.find("memory.devices[0].bytes"), std::string::npos) << text;
  EXPECT_NE(text.find("with those tiers the planner chooses"), std::string::npos) << text;
  EXPECT_NE(text.find(format_bytes(tier)), std::string::npos) << text;
  std::istringstream lines(text);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_LE(line.size(), 100u) << line;
  }
  EXPECT_GE(n, 8 + 2);  // a line per card at least, then what to change

  // The advice holds: with that tier on every card the job plans.
  for (auto& d : memory["devices"]) d["bytes"] = tier;
  e->cfg.set_memory(memory);
  const proto::PlanReport ok = plan_report(e->cfg, e->registry, spec);
  EXPECT_TRUE(ok.available) << ok.note;
  EXPECT_TRUE(config_warnings(e->cfg).empty());
}

}  // namespace
}  // namespace wand::daemon
