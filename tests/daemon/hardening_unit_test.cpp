// Issue 15, in-process pieces: a checkpoint resumes only its own job (item 7), a
// journal append that fails for lack of space leaves no torn record and the change
// undone (item 4), temporary files are cleaned.
#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/image_magic.h"
#include "scheduler/checkpoint_store.h"
#include "scheduler/durable_file.h"
#include "scheduler/job_queue.h"

namespace wand::sched {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path p;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "wand-harden-XXXXXX").string();
    p = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

TEST(HardeningUnit, ACheckpointResumesOnlyTheJobItWasWrittenFor) {
  TempDir t;
  CheckpointStore store(t.p);
  StateBlobs blobs{{"latent", {1, 2, 3}}};
  store.save("j-1", 3, blobs, "j-1@100.000000#aaaa");
  auto mine = store.load("j-1", "j-1@100.000000#aaaa");
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(mine->step, 3);
  EXPECT_EQ(mine->blobs, blobs);  // the identity is not handed to the pipeline
  try {
    store.load("j-1", "j-1@200.000000#bbbb");  // the same id, another job
    FAIL() << "resumed another job's checkpoint";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find("written for another job"), std::string::npos) << e.what();
  }
}

TEST(HardeningUnit, DiskFullOnAppendLeavesTheJournalWholeAndTheJobUnchanged) {
  TempDir t;
  const fs::path marker = t.p / "full";
  ::setenv("WAND_FAULT_DISK_FULL_FILE", marker.c_str(), 1);
  std::string id;
  {
    JobQueue q(t.p / "state");
    JobSpec s;
    s.model = "fake";
    s.width = s.height = 32;
    s.frames = 5;
    s.steps = 4;
    id = q.submit(s);
    std::ofstream(marker) << "";
    EXPECT_THROW(q.submit(s), DiskFullError);
    EXPECT_THROW(q.try_next(), DiskFullError);
    EXPECT_EQ(q.get(id)->phase, JobPhase::kQueued);  // the start was not journaled: not started
    EXPECT_EQ(q.list().size(), 1u);
    EXPECT_THROW(q.cancel(id), DiskFullError);
    EXPECT_FALSE(q.get(id)->cancel_requested);
  }
  {
    JobQueue q(t.p / "state");  // replays on the full disk (no rewrite needed)
    ASSERT_TRUE(q.get(id).has_value());
    EXPECT_EQ(q.list().size(), 1u);
  }
  fs::remove(marker);
  JobQueue q(t.p / "state");
  EXPECT_EQ(q.get(id)->phase, JobPhase::kQueued);
  ::unsetenv("WAND_FAULT_DISK_FULL_FILE");
}

// Item 6: the input image is stored once beside the journal, not in it.
TEST(HardeningUnit, InputImagesStayOutOfTheJournal) {
  TempDir t;
  JobSpec s;
  s.task = "i2v";
  s.model = "fake";
  s.width = s.height = 32;
  s.frames = 5;
  s.steps = 4;
  s.image.assign(1 << 20, 7);
  std::copy_n("\x89PNG\r\n\x1a\n", 8, s.image.begin());
  std::string id;
  {
    JobQueue q(t.p);
    id = q.submit(s);
  }
  std::ifstream in(t.p / "journal.jsonl");
  const std::string journal((std::istreambuf_iterator<char>(in)), {});
  EXPECT_LT(journal.size(), 4096u) << "the journal carries the image";
  EXPECT_EQ(journal.find("image_b64"), std::string::npos);
  ASSERT_TRUE(fs::exists(t.p / "inputs" / (id + ".img")));
  JobQueue q(t.p);
  EXPECT_EQ(q.get(id)->spec.image, s.image);  // back at replay
  auto started = q.try_next();
  ASSERT_TRUE(started.has_value());
  q.finish(id, JobPhase::kDone, "", 10, "wandrgb");
  EXPECT_FALSE(fs::exists(t.p / "inputs" / (id + ".img")));
  EXPECT_TRUE(q.get(id)->spec.image.empty());
}

TEST(HardeningUnit, TemporaryFilesAreRemovedAtStart) {
  TempDir t;
  fs::create_directories(t.p / "checkpoints");
  std::ofstream(t.p / "checkpoints" / "j-4.ckpt.tmp") << "half";
  CheckpointStore store(t.p);
  EXPECT_FALSE(fs::exists(t.p / "checkpoints" / "j-4.ckpt.tmp"));
}

TEST(HardeningUnit, OnlyImageMagicIsAccepted) {
  auto sniff = [](const std::string& b) {
    return sniff_image_format(reinterpret_cast<const std::uint8_t*>(b.data()), b.size());
  };
  EXPECT_EQ(sniff(std::string("\x89PNG\r\n\x1a\n", 8) + "rest"), ImageFormat::kPng);
  EXPECT_EQ(sniff("\xff\xd8\xff\xe0"), ImageFormat::kJpeg);
  EXPECT_EQ(sniff(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), ImageFormat::kWebp);
  EXPECT_EQ(sniff("P6\n4 4\n255\n"), ImageFormat::kPpm);
  EXPECT_EQ(sniff("ffconcat version 1.0\nfile x\n"), ImageFormat::kUnknown);
  EXPECT_EQ(sniff("#EXTM3U\n"), ImageFormat::kUnknown);
  EXPECT_EQ(sniff("file:/etc/passwd"), ImageFormat::kUnknown);
}

}  // namespace
}  // namespace wand::sched
