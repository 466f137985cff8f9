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
  EXPECT_TRUE(va == file_bytes(d.dir() / "b.video")) << "same seed, different bytes";
  d.stop();
}

}  // namespace
}  // namespace wand::test
