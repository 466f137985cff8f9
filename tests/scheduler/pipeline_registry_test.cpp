#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/fake_pipeline.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

TEST(PipelineRegistry, ModelDirsAreCheckedAndPipelinesCreatedOnFirstUse) {
  test::TempDir dir;
  auto fake = dir.path() / "fake";
  auto plain = dir.path() / "plain";
  std::filesystem::create_directories(fake);
  std::filesystem::create_directories(plain);
  std::ofstream(fake / kFakeModelMarker) << R"({"step_ms": 0})";
  PipelineRegistry reg;
  register_fake_pipeline(reg);
  try {
    reg.add_model("x", dir.path() / "missing");
    FAIL() << "accepted a missing directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
  try {
    reg.add_model("x", plain);
    FAIL() << "accepted a directory no pipeline recognises";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not recognised"), std::string::npos) << e.what();
  }
  reg.add_model("f", fake);
  ASSERT_EQ(reg.models().size(), 1u);
  EXPECT_EQ(reg.models()[0].factory, "fake");
  EXPECT_EQ(reg.loaded("f"), nullptr);  // nothing created yet

  JobSpec s;
  s.model = "f";
  s.width = s.height = 16;
  s.frames = 8;  // not 4k+1
  s.steps = 1;
  EXPECT_THROW(reg.validate("f", s), Error);  // the factory's check, without loading
  EXPECT_EQ(reg.loaded("f"), nullptr);
  s.frames = 9;
  EXPECT_NO_THROW(reg.validate("f", s));
  EXPECT_THROW(reg.validate("nope", s), Error);

  auto p = reg.pipeline("f");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reg.loaded("f"), p);
  EXPECT_EQ(reg.pipeline("f"), p);  // cached

  reg.set_models({{"f", fake}, {"g", fake}});  // unchanged entry keeps its pipeline
  EXPECT_EQ(reg.loaded("f"), p);
  EXPECT_EQ(reg.loaded("g"), nullptr);
  reg.set_models({{"g", fake}});
  EXPECT_FALSE(reg.has_model("f"));
  EXPECT_THROW(reg.pipeline("f"), Error);
}

TEST(PipelineRegistry, OnePipelinePerModelAndDeviceSlot) {
  test::TempDir dir;
  std::ofstream(dir.path() / kFakeModelMarker) << R"({"step_ms": 0})";
  {  // A factory with make_on gets the slot.
    PipelineRegistry reg;
    register_fake_pipeline(reg, std::make_shared<FakeDeviceMeter>());
    reg.add_model("f", dir.path());
    const DeviceSlot a{0, 12ull << 30, "cuda:0"}, b{3, 24ull << 30, "cuda:3"};
    auto pa = reg.pipeline("f", a);
    auto pb = reg.pipeline("f", b);
    ASSERT_NE(pa, nullptr);
    EXPECT_NE(pa, pb);
    EXPECT_EQ(reg.pipeline("f", b), pb);  // cached per slot
    EXPECT_EQ(dynamic_cast<FakePipeline&>(*pb).slot().name, "cuda:3");
    EXPECT_EQ(dynamic_cast<FakePipeline&>(*pb).slot().vram_budget_bytes, 24ull << 30);
    EXPECT_EQ(reg.pipeline("f"), pa);  // the one-argument call is slot 0's
    EXPECT_NE(reg.loaded("f"), nullptr);
  }
  {  // The old one-argument factory still works, one pipeline per slot.
    PipelineRegistry reg;
    reg.add_factory({"old", [](const std::filesystem::path&) { return true; },
                     [](const std::filesystem::path&) -> std::unique_ptr<Pipeline> {
                       return std::make_unique<FakePipeline>(FakePipelineOptions{});
                     },
                     encode_wandrgb});
    reg.add_model("o", dir.path());
    auto p0 = reg.pipeline("o", DeviceSlot{0, 0, "a"});
    auto p1 = reg.pipeline("o", DeviceSlot{1, 0, "b"});
    EXPECT_NE(p0, p1);
    EXPECT_EQ(dynamic_cast<FakePipeline&>(*p1).slot().index, 0);  // the old factory ignores the slot
  }
}

TEST(PipelineRegistry, OnePipelinePerModelAndDeviceGroup) {
  test::TempDir dir;
  std::ofstream(dir.path() / kFakeModelMarker) << R"({"step_ms": 0})";
  const DeviceSlot c0{0, 24ull << 30, "cuda:0"}, c1{1, 24ull << 30, "cuda:1"}, c2{2, 80ull << 30, "cuda:2"};
  {  // The fake factory's make_group gets the group; one pipeline per (model, group key).
    auto meter = std::make_shared<FakeDeviceMeter>();
    PipelineRegistry reg;
    register_fake_pipeline(reg, meter);
    reg.add_model("f", dir.path());
    reg.add_model("g", dir.path());
    EXPECT_TRUE(reg.can_group("f"));
    EXPECT_FALSE(reg.can_group("nope"));
    const DeviceGroup cfg{{c0, c1}, "cfg-parallel"}, uly{{c0, c1}, "ulysses-2"}, cfg12{{c1, c2}, "cfg-parallel"};
    EXPECT_EQ(cfg.key(), "cfg-parallel@0,1");
    auto a = reg.pipeline("f", cfg);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(reg.pipeline("f", cfg), a);  // cached
    auto b = reg.pipeline("f", uly);
    auto c = reg.pipeline("f", cfg12);
    auto d = reg.pipeline("g", cfg);
    EXPECT_NE(a, b);
    EXPECT_NE(a, c);
    EXPECT_NE(a, d);
    EXPECT_NE(a, reg.pipeline("f", c0));  // a slot's pipeline is another one
    const auto& fa = dynamic_cast<FakePipeline&>(*a);
    ASSERT_EQ(fa.group().members.size(), 2u);
    EXPECT_EQ(fa.group().members[1].name, "cuda:1");
    EXPECT_EQ(fa.group().strategy, "cfg-parallel");
    EXPECT_EQ(fa.slot().index, 0);  // the first member
    EXPECT_EQ(dynamic_cast<FakePipeline&>(*c).group().members[1].vram_budget_bytes, 80ull << 30);
    EXPECT_EQ(meter->groups(), (std::vector<std::string>{"cfg-parallel@0,1", "ulysses-2@0,1", "cfg-parallel@1,2",
                                                          "cfg-parallel@0,1"}));
    EXPECT_THROW(reg.pipeline("nope", cfg), Error);
    try {
      reg.pipeline("f", DeviceGroup{{}, "cfg-parallel"});
      ADD_FAILURE() << "an empty group made a pipeline";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig);
    }
    // A new directory for the name drops its group pipelines too.
    reg.add_model("f", dir.path());
    EXPECT_NE(reg.pipeline("f", cfg), a);
    EXPECT_EQ(reg.pipeline("g", cfg), d);
    reg.set_models({{"f", dir.path()}});
    EXPECT_EQ(reg.loaded("g"), nullptr);
  }
  {  // A factory without make_group: Error(kConfig) naming the model and the group.
    PipelineRegistry reg;
    reg.add_factory({"old", [](const std::filesystem::path&) { return true; },
                     [](const std::filesystem::path&) -> std::unique_ptr<Pipeline> {
                       return std::make_unique<FakePipeline>(FakePipelineOptions{});
                     },
                     encode_wandrgb});
    reg.add_model("o", dir.path());
    EXPECT_FALSE(reg.can_group("o"));
    try {
      reg.pipeline("o", DeviceGroup{{c0, c1}, "cfg-parallel"});
      ADD_FAILURE() << "a factory without make_group made a group pipeline";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConfig);
      EXPECT_NE(std::string(e.what()).find("'o'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cfg-parallel@0,1"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("make_group"), std::string::npos) << e.what();
    }
    EXPECT_EQ(reg.loaded("o"), nullptr);  // nothing half-made
  }
}

}  // namespace
}  // namespace wand::sched
