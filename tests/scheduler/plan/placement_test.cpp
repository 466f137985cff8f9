// Placement policy (scheduler/plan/placement.h): the runner's peak estimator and the
// card-group choice, on the machine the daemon planned (each card's whole budget and fixed
// tier), for the real t2v-A14B geometry (a sparse release-layout directory).
#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/multigpu/parallel_strategy.h"
#include "scheduler/plan/multi_planner.h"
#include "scheduler/plan/placement.h"
#include "scheduler/plan/planner.h"
#include "tests/scheduler/plan/model_dir_writer.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched::plan {
namespace {

constexpr std::uint64_t kGiB = 1ull << 30;

JobSpec job(const std::string& model, int w, int h, int frames) {
  JobSpec s;
  s.model = model;
  s.task = "t2v";
  s.width = w;
  s.height = h;
  s.frames = frames;
  s.steps = 40;
  return s;
}

struct Fixture {
  wand::test::TempDir tmp;
  PipelineRegistry registry;
  MachineSpec machine;
  std::vector<DeviceSlot> slots;
  Fixture() {
    test::write_model_dir(tmp.path() / "a14b", test::Geometry::t2v_a14b(), "BF16", test::kT5Bytes,
                          test::kVae21Bytes);
    std::filesystem::create_directories(tmp.path() / "fake");  // another factory's model
    // Planned as the daemon's "wan" factory; never asked to build a pipeline here.
    PipelineFactory wan;
    wan.name = "wan";
    wan.probe = [](const std::filesystem::path& d) { return std::filesystem::exists(d / "high_noise_model"); };
    wan.make = [](const std::filesystem::path&) -> std::unique_ptr<Pipeline> { return nullptr; };
    wan.make_group = [](const std::filesystem::path&, const DeviceGroup&) -> std::unique_ptr<Pipeline> {
      return nullptr;
    };
    registry.add_factory(wan);
    PipelineFactory other;
    other.name = "other";
    other.probe = [](const std::filesystem::path&) { return true; };
    other.make = wan.make;
    registry.add_factory(other);
    registry.add_model("a14b", tmp.path() / "a14b");
    registry.add_model("fake", tmp.path() / "fake");
    // Listed biggest first: the estimator tries the smallest budget first whatever the order.
    machine.devices = {{1, 23 * kGiB, 10 * kGiB}, {0, 15 * kGiB, 4 * kGiB}};
    machine.host_bytes = 96 * kGiB;
    slots = {{1, 23 * kGiB, "cuda:1"}, {0, 15 * kGiB, "cuda:0"}};
  }
};

TEST(PeakPlanner, ThePeakOnTheSmallestCardThatRunsTheJob) {
  Fixture f;
  const Calibration cal = Calibration::defaults();
  PeakPlanner peak(f.machine, cal, f.registry, f.slots);
  const ModelShape shape = model_shape_from_dir(f.tmp.path() / "a14b");
  const JobSpec small = job("a14b", 832, 480, 81);
  // The smaller card (its budget, its fixed tier) runs a 480p job: its peak is that card's.
  ASSERT_TRUE(fits(shape, small, {0, 15 * kGiB, 4 * kGiB}, cal));
  EXPECT_EQ(peak(small), predicted_peak_bytes(shape, small, {0, 15 * kGiB, 4 * kGiB}, cal));
  EXPECT_EQ(peak(small), peak(small));  // cached, same answer
  // Too big for every card: kOutOfMemory naming each card's budget and the planner's reason.
  const JobSpec huge = job("a14b", 1280, 720, 401);
  try {
    peak(huge);
    FAIL() << "a 1280x720x401 job fitted a 23 GiB card";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfMemory);
    const std::string m = e.what();
    EXPECT_NE(m.find("too big for every card"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda:0 " + format_bytes(15 * kGiB)), std::string::npos) << m;
    EXPECT_NE(m.find("cuda:1 " + format_bytes(23 * kGiB)), std::string::npos) << m;
  }
  // Models of other factories (and unknown ones) are not planned: they fit everywhere.
  EXPECT_EQ(peak(job("fake", 832, 480, 81)), 0u);
  EXPECT_EQ(peak(job("nope", 832, 480, 81)), 0u);
}

TEST(GroupPlanner, OneCardUnlessAJobIsAloneOnIdleCardsAndThePlannerChoosesSeveral) {
  Fixture f;
  GroupPlanner groups(f.machine, Calibration::defaults(), f.registry);
  const JobSpec spec = job("a14b", 1280, 720, 81);
  EXPECT_FALSE(groups(spec, f.slots, /*waiting=*/1).has_value());          // others wait: job-parallel
  EXPECT_FALSE(groups(spec, {f.slots[0]}, 0).has_value());                  // nothing to choose
  EXPECT_FALSE(groups(job("fake", 832, 480, 81), f.slots, 0).has_value());  // not planned
  // A job alone on both cards: whatever plan_multi chooses, a group has the taking card first,
  // a strategy the runner can parse, and every member among the idle cards.
  const std::optional<DeviceGroup> g = groups(spec, f.slots, 0);
  if (g) {
    ASSERT_GE(g->members.size(), 2u);
    EXPECT_EQ(g->members[0].index, f.slots[0].index);
    EXPECT_EQ(parse_strategy(g->strategy).ranks(), static_cast<int>(g->members.size()));
  }
  EXPECT_EQ(groups(spec, f.slots, 0).has_value(), g.has_value());  // cached, same answer
}

TEST(GroupPlanner, PlannerStrategyNamesBecomeTheRunnersNames) {
  EXPECT_EQ(strategy_from_plan("cfg-x-ulysses-2"), "cfg2xulysses-2");
  EXPECT_EQ(strategy_from_plan("cfg-parallel"), "cfg-parallel");
  EXPECT_EQ(strategy_from_plan("ulysses-4"), "ulysses-4");
  EXPECT_EQ(strategy_from_plan("single"), "single");
}

}  // namespace
}  // namespace wand::sched::plan

namespace wand::sched::plan {
namespace {

// Note [Guidance 1]: a job with guide scale 1 has no uncond branch; the group chooser never
// puts it on a CFG split, and its log reason says so (planner v2 marks the splits infeasible).
TEST(GroupPlanner, GuidanceOneJobsAreNeverCfgSplit) {
  Fixture f;
  GroupPlanner groups(f.machine, Calibration::defaults(), f.registry);
  JobSpec spec = job("a14b", 832, 480, 81);
  spec.steps = 4;
  spec.guide_scale = {1.0};
  const std::optional<DeviceGroup> g = groups(spec, f.slots, 0);
  if (g) {
    EXPECT_FALSE(parse_strategy(g->strategy).cfg_split()) << g->strategy;
    EXPECT_EQ(parse_strategy(g->strategy).ranks(), static_cast<int>(g->members.size()));
  }
  // The decision is cached per guidance: the guided job is planned on its own.
  JobSpec guided = spec;
  guided.guide_scale = {3.5};
  const std::optional<DeviceGroup> h = groups(guided, f.slots, 0);
  if (h) EXPECT_EQ(parse_strategy(h->strategy).ranks(), static_cast<int>(h->members.size()));
  const ModelShape shape = model_shape_from_dir(f.tmp.path() / "a14b");
  MachineSpec mc{{f.machine.devices[1], f.machine.devices[0]}, f.machine.host_bytes};
  const MultiPlan p = plan_multi(shape, {spec}, mc, Calibration::defaults());
  EXPECT_NE(p.choice.strategy.rfind("cfg", 0), 0u) << p.choice.strategy;
}

}  // namespace
}  // namespace wand::sched::plan
