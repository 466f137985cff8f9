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

}  // namespace
}  // namespace wand::sched
