// End to end with the real Wan2.2 pipeline: wand-make-model writes a tiny model
// in the release layout, wand serves it, `wanctl generate` leaves a video file.
#include <fstream>

#include <gtest/gtest.h>

#include "tests/daemon/harness.h"

namespace wand::test {
namespace {

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(WanEndToEnd, TinyT2vModelGeneratesADeterministicVideo) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(),
                              "--seed", "1"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  d.start({"--model", "tiny=" + model.string()});
  CmdResult models = d.wanctl({"models", "--json"});
  ASSERT_EQ(models.exit_code, 0) << models.err;
  bool wan = false;
  nlohmann::json list = models.json();
  for (const auto& m : list["models"]) wan = wan || (m["name"] == "tiny" && m["pipeline"] == "wan");
  EXPECT_TRUE(wan) << models.out;

  std::vector<std::string> args = {"generate", "--model", "tiny", "--prompt", "a cat on a surfboard",
                                   "--size", "64x64", "--frames", "5", "--steps", "3", "--seed", "7",
                                   "--json", "-o"};
  auto a = args, b = args;
  a.push_back((d.dir() / "a.video").string());
  b.push_back((d.dir() / "b.video").string());
  CmdResult ra = d.wanctl(a);
  ASSERT_EQ(ra.exit_code, 0) << ra.out << ra.err << d.log();
  EXPECT_EQ(ra.json()["state"], "done");
  CmdResult rb = d.wanctl(b);
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  std::string va = file_bytes(d.dir() / "a.video");
  EXPECT_GT(va.size(), 100u);
  const std::string vb = file_bytes(d.dir() / "b.video");
  EXPECT_TRUE(va == vb) << "same seed, different bytes: " << va.size() << " vs " << vb.size() << " bytes";
  d.stop();
}

// Durability with the real pipeline: SIGKILL while a tiny t2v job is between
// steps, restart, the job resumes from its last checkpoint (latents, sampler
// history, RNG) and its video is bitwise identical to an uninterrupted run.
TEST(WanEndToEnd, SigkillMidJobThenRestartGivesIdenticalVideo) {
  DaemonFixture d(1);
  auto model = d.dir() / "models" / "tiny-t2v";
  CmdResult mk = run_command({WAND_MAKE_MODEL_EXE, "--preset", "tiny-t2v", "--out", model.string(),
                              "--seed", "3"});
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  const std::vector<std::string> model_arg = {"--model", "tiny=" + model.string()};
  const nlohmann::json spec = {{"model", "tiny"}, {"prompt", "a lighthouse in a storm"},
                               {"width", 128},    {"height", 128},
                               {"frames", 9},     {"steps", 40},
                               {"seed", 11}};
  d.start(model_arg);
  std::string id;
  {
    RawClient c(d.socket());
    c.hello();
    id = c.call({{"type", "submit"}, {"job", spec}})["id"];
  }
  nlohmann::json at = watch_until(d, id, [](const nlohmann::json& j) { return j["step"].get<int>() >= 3; });
  ASSERT_EQ(at["state"], "running") << "the job ended before it could be interrupted: " << at.dump();
  d.kill9();

  d.start(model_arg);
  nlohmann::json done = watch_until(d, id, [](const nlohmann::json&) { return false; });
  ASSERT_EQ(done["state"], "done") << d.log();
  EXPECT_GE(done["resumed_from_step"].get<int>(), 3);  // resumed, not restarted
  EXPECT_LT(done["resumed_from_step"].get<int>(), 40);
  const std::string resumed = fetch(d, id);

  std::string ref_id;
  {
    RawClient c(d.socket());
    c.hello();
    ref_id = c.call({{"type", "submit"}, {"job", spec}})["id"];
  }
  nlohmann::json ref = watch_until(d, ref_id, [](const nlohmann::json&) { return false; });
  ASSERT_EQ(ref["state"], "done") << d.log();
  EXPECT_EQ(ref["resumed_from_step"], -1);
  const std::string uninterrupted = fetch(d, ref_id);
  ASSERT_GT(uninterrupted.size(), 1000u);
  EXPECT_TRUE(resumed == uninterrupted) << "resumed video differs from the uninterrupted one";
  d.stop();
}

}  // namespace
}  // namespace wand::test
