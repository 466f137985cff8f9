// The forced group chooser (executor.parallel = a strategy name, daemon/group_chooser.h) and
// guidance 1 (Note [Guidance 1], model/sampler_schedule.h): a job asking for guide scale 1 on
// both experts has no uncond branch, so a CFG split is not used for it (one card, logged);
// other jobs and non-CFG strategies still get their group.
#include <gtest/gtest.h>

#include "daemon/config.h"
#include "daemon/group_chooser.h"
#include "daemon/plan_service.h"
#include "scheduler/pipeline_registry.h"
#include "tests/scheduler/test_dir.h"

namespace wand::daemon {
namespace {

struct Registry {
  wand::test::TempDir tmp;
  sched::PipelineRegistry registry;
  Registry() {
    std::filesystem::create_directories(tmp.path() / "m");
    sched::PipelineFactory f;
    f.name = "wan";
    f.probe = [](const std::filesystem::path&) { return true; };
    f.make = [](const std::filesystem::path&) -> std::unique_ptr<sched::Pipeline> { return nullptr; };
    f.make_group = [](const std::filesystem::path&, const sched::DeviceGroup&) -> std::unique_ptr<sched::Pipeline> {
      return nullptr;
    };
    registry.add_factory(f);
    registry.add_model("m", tmp.path() / "m");
  }
};

sched::JobSpec job(std::vector<double> guide) {
  sched::JobSpec s;
  s.model = "m";
  s.width = 832;
  s.height = 480;
  s.frames = 81;
  s.steps = 4;
  s.guide_scale = std::move(guide);
  return s;
}

TEST(GroupChooser, ForcedCfgSplitIsNotUsedForAGuidanceOneJob) {
  Registry r;
  const std::vector<sched::DeviceSlot> idle = {{0, 0, "cuda:0"}, {1, 0, "cuda:1"}};
  DaemonConfig cfg;
  cfg.executor.parallel = "cfg-parallel";
  const sched::GroupChooser cfg_split = make_group_chooser(cfg, PlanMachine{}, r.registry);
  ASSERT_TRUE(cfg_split);
  EXPECT_FALSE(cfg_split(job({1.0}), idle, 0).has_value());
  EXPECT_FALSE(cfg_split(job({1.0, 1.0}), idle, 0).has_value());
  const auto guided = cfg_split(job({3.5}), idle, 0);
  ASSERT_TRUE(guided.has_value());
  EXPECT_EQ(guided->key(), "cfg-parallel@0,1");
  EXPECT_TRUE(cfg_split(job({1.0, 4.0}), idle, 0).has_value());  // the high-noise steps guide
  EXPECT_TRUE(cfg_split(job({}), idle, 0).has_value());           // the model's scales

  cfg.executor.parallel = "ulysses-2";  // nothing to split by branch: a group either way
  const sched::GroupChooser ulysses = make_group_chooser(cfg, PlanMachine{}, r.registry);
  const auto u = ulysses(job({1.0}), idle, 0);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->key(), "ulysses-2@0,1");
}

}  // namespace
}  // namespace wand::daemon
