#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/journal.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

using nlohmann::json;

TEST(Journal, ReplaysAppendedRecordsInOrder) {
  test::TempDir dir;
  auto file = dir.path() / "j.jsonl";
  {
    Journal j(file, nullptr);
    for (int i = 0; i < 5; ++i) j.append({{"op", "x"}, {"i", i}});
  }
  std::vector<json> recs;
  Journal j(file, &recs);
  ASSERT_EQ(recs.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(recs[i]["i"], i);
  EXPECT_EQ(j.torn_bytes_dropped(), 0u);
}

TEST(Journal, TornLastRecordIsDroppedAndTruncated) {
  test::TempDir dir;
  auto file = dir.path() / "j.jsonl";
  {
    Journal j(file, nullptr);
    j.append({{"i", 1}});
    j.append({{"i", 2}});
  }
  auto full = std::filesystem::file_size(file);
  {
    std::ofstream out(file, std::ios::app | std::ios::binary);
    out << R"({"i": 3, "pad)";  // a crash in the middle of an append
  }
  std::vector<json> recs;
  {
    Journal j(file, &recs);
    EXPECT_EQ(j.torn_bytes_dropped(), 13u);
    EXPECT_EQ(std::filesystem::file_size(file), full);
    j.append({{"i", 4}});
  }
  ASSERT_EQ(recs.size(), 2u);
  recs.clear();
  Journal again(file, &recs);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[2]["i"], 4);
}

TEST(Journal, TornLastLineWithNewlineButBadJsonIsDropped) {
  test::TempDir dir;
  auto file = dir.path() / "j.jsonl";
  {
    Journal j(file, nullptr);
    j.append({{"i", 1}});
  }
  {
    std::ofstream out(file, std::ios::app | std::ios::binary);
    out << std::string("{\"i\":\0\0\0", 8) << "\n";
  }
  std::vector<json> recs;
  Journal j(file, &recs);
  EXPECT_EQ(recs.size(), 1u);
  EXPECT_EQ(j.torn_bytes_dropped(), 9u);
}

TEST(Journal, CorruptionBeforeTheLastRecordIsAnError) {
  test::TempDir dir;
  auto file = dir.path() / "j.jsonl";
  {
    std::ofstream out(file, std::ios::binary);
    out << "{\"i\":1}\nGARBAGE\n{\"i\":3}\n";
  }
  try {
    Journal j(file, nullptr);
    FAIL() << "accepted a corrupt journal";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(Journal, RewriteReplacesTheContents) {
  test::TempDir dir;
  auto file = dir.path() / "j.jsonl";
  {
    Journal j(file, nullptr);
    j.append({{"i", 1}});
    j.append({{"i", 2}});
    j.rewrite({{{"i", 9}}});
    j.append({{"i", 10}});
  }
  std::vector<json> recs;
  Journal j(file, &recs);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["i"], 9);
  EXPECT_EQ(recs[1]["i"], 10);
}

}  // namespace
}  // namespace wand::sched
