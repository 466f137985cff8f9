#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "scheduler/checkpoint_store.h"
#include "tests/scheduler/test_dir.h"

namespace wand::sched {
namespace {

TEST(CheckpointStore, SaveLoadRoundTrip) {
  test::TempDir dir;
  CheckpointStore store(dir.path());
  EXPECT_FALSE(store.load("j-1").has_value());
  StateBlobs blobs{{"latent", ByteBuffer(1000, 7)}, {"rng", {1, 2, 3, 4, 5, 6, 7, 8}}, {"empty", {}}};
  store.save("j-1", 4, blobs);
  store.save("j-1", 5, blobs);  // replaces
  auto c = store.load("j-1");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->step, 5);
  EXPECT_EQ(c->blobs, blobs);
  store.remove("j-1");
  EXPECT_FALSE(store.load("j-1").has_value());
}

TEST(CheckpointStore, CorruptFileIsReportedWithItsPath) {
  test::TempDir dir;
  CheckpointStore store(dir.path());
  store.save("j-2", 1, {{"latent", ByteBuffer(64, 1)}});
  auto file = dir.path() / "checkpoints" / "j-2.ckpt";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x5a');
  }
  try {
    store.load("j-2");
    FAIL() << "accepted a corrupt checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("j-2.ckpt"), std::string::npos) << e.what();
  }
}

TEST(CheckpointStore, ResultsAreStoredByFormat) {
  test::TempDir dir;
  CheckpointStore store(dir.path());
  store.save_result("j-3", EncodedVideo{"wandrgb", {9, 8, 7}});
  auto p = store.result_path("j-3", "wandrgb");
  ASSERT_TRUE(std::filesystem::exists(p));
  EXPECT_EQ(std::filesystem::file_size(p), 3u);
}

}  // namespace
}  // namespace wand::sched
