// Golden cases of the DiT family (rope, dit_*, sched_*, moe_boundary): every
// output case.json lists is recomputed by the project's code and checked with
// the case's tolerances_fp32. Set A lives in tests/data/golden (tests/golden_dir.h).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "model/golden/golden.h"
#include "model/safetensors.h"
#include "tests/model/golden_compare.h"
#include "tests/golden_dir.h"

namespace {

namespace fs = std::filesystem;
using wand::model::golden::Case;
using wand::model::golden::Outputs;

const std::set<std::string>& supported() {
  static const std::set<std::string> s = {"rope",        "dit_t2v",     "dit_i2v",     "dit_ti2v",
                                          "sched_unipc", "sched_dpmpp", "moe_boundary"};
  return s;
}

std::string case_kind(const fs::path& dir) {
  std::ifstream in(dir / "case.json");
  if (!in) return {};
  try {
    return nlohmann::json::parse(in).value("case", std::string());
  } catch (...) {
    return {};
  }
}

std::vector<std::string> supported_case_dirs() {
  std::vector<std::string> v;
  const fs::path root = wand::test::golden_root();
  if (!fs::is_directory(root)) return v;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory() && supported().count(case_kind(e.path()))) v.push_back(e.path().string());
  }
  std::sort(v.begin(), v.end());
  return v;
}

Outputs run_handler(const Case& c) {
  const std::string k = c.spec.value("case", std::string());
  if (k == "rope") return wand::model::golden::run_rope(c);
  if (k == "sched_unipc" || k == "sched_dpmpp") return wand::model::golden::run_scheduler(c);
  if (k == "moe_boundary") return wand::model::golden::run_moe_boundary(c);
  return wand::model::golden::run_dit(c);
}

class DitGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(DitGolden, OutputsMatchReference) {
  const fs::path dir(GetParam());
  Case c = wand::model::golden::load_case(dir);
  Outputs got = run_handler(c);
  auto ref = wand::model::load_safetensors((dir / "outputs.safetensors").string());
  const auto names = wand::model::golden::expected_outputs(c);
  ASSERT_FALSE(names.empty());
  int checked = 0;
  for (const auto& name : names) {
    auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << "output '" << name << "' was not produced";
      continue;
    }
    ASSERT_TRUE(ref.count(name)) << "reference lacks " << name;
    auto r = wand::test::compare_golden(name, it->second, ref.at(name), c.spec.value("tolerances_fp32", nlohmann::json::object()));
    EXPECT_TRUE(r.ok) << r.message;
    if (name.size() > 7 && name.compare(name.size() - 7, 7, "_sigmas") == 0) {
      EXPECT_EQ(r.max_abs_err, 0.0) << name << " must be bit-exact float32";
    }
    std::cout << "[ golden ] " << r.message << "\n";
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(SetA, DitGolden, ::testing::ValuesIn(supported_case_dirs()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return fs::path(info.param).filename().string();
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(DitGolden);

TEST(DitGoldenSet, AllDitFamilyCasesPresent) {
  // The set must hold every case this family supports (otherwise the suite above silently shrinks).
  WAND_REQUIRE_DATA(wand::test::golden_root());
  std::set<std::string> found;
  for (const auto& d : supported_case_dirs()) found.insert(case_kind(d));
  for (const auto& k : supported()) EXPECT_TRUE(found.count(k)) << "golden case " << k << " not found under " << wand::test::golden_root().string();
}

TEST(DitGoldenTool, WandGoldenWritesEveryOutput) {
  // End to end: the wand-golden binary on the rope case; its file must hold every listed output.
  const fs::path dir = wand::test::golden_root() / "rope";
  ASSERT_TRUE(fs::exists(dir / "case.json"));
  const fs::path out = fs::temp_directory_path() / ("wand_golden_rope_" + std::to_string(::getpid()) + ".safetensors");
  const std::string cmd = std::string("\"") + WAND_GOLDEN_BIN + "\" \"" + dir.string() + "\" --out \"" + out.string() + "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto got = wand::model::load_safetensors(out.string());
  auto ref = wand::model::load_safetensors((dir / "outputs.safetensors").string());
  Case c = wand::model::golden::load_case(dir);
  for (const auto& name : wand::model::golden::expected_outputs(c)) {
    ASSERT_TRUE(got.count(name)) << name;
    auto r = wand::test::compare_golden(name, got.at(name), ref.at(name), c.spec["tolerances_fp32"]);
    EXPECT_TRUE(r.ok) << r.message;
  }
  fs::remove(out);
}

TEST(DitGoldenTool, UnknownCaseFails) {
  const fs::path tmp = fs::temp_directory_path() / ("wand_golden_bad_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  std::ofstream(tmp / "case.json") << R"({"case": "no_such_case"})";
  const std::string cmd = std::string("\"") + WAND_GOLDEN_BIN + "\" \"" + tmp.string() + "\" --out \"" +
                          (tmp / "o.safetensors").string() + "\" 2>/dev/null";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  EXPECT_FALSE(fs::exists(tmp / "o.safetensors"));
  fs::remove_all(tmp);
}

}  // namespace
