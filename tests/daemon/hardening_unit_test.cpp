// Issue 15, in-process pieces: a checkpoint resumes only its own job (item 7), a
// journal append that fails for lack of space leaves no torn record and the change
// undone (item 4), temporary files are cleaned.
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/image_magic.h"
#include "daemon/job_view.h"
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

std::string file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ino_t inode_of(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

JobSpec small_spec() {
  JobSpec s;
  s.model = "fake";
  s.width = s.height = 32;
  s.frames = 5;
  s.steps = 4;
  return s;
}

// Item 4 (Note [Journal compaction]): a start replays the journal and writes nothing:
// not on a full disk, and not with space either (what replay derives, running -> queued,
// is derived again at the next start). Only a journal grown well past the job count is
// rewritten (a new file: new inode).
TEST(HardeningUnit, AStartDoesNotRewriteTheJournal) {
  TempDir t;
  const fs::path state = t.p / "state", journal = state / "journal.jsonl";
  const fs::path marker = t.p / "full";
  std::string running, queued;
  {
    JobQueue q(state);
    running = q.submit(small_spec());
    queued = q.submit(small_spec());
    ASSERT_TRUE(q.try_next().has_value());  // running when the daemon "dies"
    q.record_step(running, 1, 0.5);
  }
  const std::string bytes = file_text(journal);
  const ino_t ino = inode_of(journal);
  ASSERT_FALSE(bytes.empty());
  ::setenv("WAND_FAULT_DISK_FULL_FILE", marker.c_str(), 1);
  std::ofstream(marker) << "";
  {
    JobQueue q(state);  // on the full disk
    EXPECT_EQ(q.get(running)->phase, JobPhase::kQueued);
    EXPECT_EQ(q.get(running)->step, 1);
    EXPECT_EQ(q.get(queued)->phase, JobPhase::kQueued);
  }
  fs::remove(marker);
  ::unsetenv("WAND_FAULT_DISK_FULL_FILE");
  EXPECT_EQ(file_text(journal), bytes) << "a start on the full disk wrote to the journal";
  EXPECT_EQ(inode_of(journal), ino) << "a start on the full disk rewrote the journal";
  {
    JobQueue q(state);  // with space: still nothing to write
    EXPECT_EQ(q.get(running)->phase, JobPhase::kQueued);
  }
  EXPECT_EQ(file_text(journal), bytes) << "a start with space wrote to the journal";
  EXPECT_EQ(inode_of(journal), ino) << "a start with space rewrote the journal";
  {
    JobQueue q(state);  // grow the journal well past its two jobs
    ASSERT_TRUE(q.try_next().has_value());
    for (int i = 0; i < 300; ++i) q.record_step(running, 1 + i % 3, 0.5);
  }
  const std::size_t grown = file_text(journal).size();
  {
    JobQueue q(state);
    EXPECT_EQ(q.get(running)->phase, JobPhase::kQueued);
    EXPECT_EQ(q.list().size(), 2u);
  }
  EXPECT_NE(inode_of(journal), ino) << "a journal of 300+ records for 2 jobs was not compacted";
  EXPECT_LT(file_text(journal).size(), grown / 10);
}

// Item 4 (Note [Disk full]): ENOSPC and EDQUOT are DiskFullError (a transient full disk),
// other errors a plain Error(kIo); a write that fails part-way removes its temporary file.
TEST(HardeningUnit, AFailedWriteIsTypedAndLeavesNoTemporaryFile) {
  for (int err : {ENOSPC, EDQUOT}) {
    try {
      throw_io_error("append", "/x/journal.jsonl", err);
    } catch (const DiskFullError& e) {
      EXPECT_NE(std::string(e.what()).find("/x/journal.jsonl"), std::string::npos) << e.what();
    } catch (...) {
      ADD_FAILURE() << "errno " << err << " is not a DiskFullError";
    }
  }
  bool typed_full = false;
  try {
    throw_io_error("append", "/x/journal.jsonl", EIO);
  } catch (const DiskFullError&) {
    typed_full = true;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
  }
  EXPECT_FALSE(typed_full) << "EIO reported as a full disk";
  // A real failing write() part-way through the file: the file-size limit (EFBIG).
  TempDir t;
  const fs::path target = t.p / "j-1.ckpt";
  std::vector<std::uint8_t> big(1 << 20, 0x5a);
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  try {
    write_file_atomic(target, big);
  } catch (const Error& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("j-1.ckpt.tmp"), std::string::npos) << e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw) << "a write past the file-size limit did not fail";
  EXPECT_FALSE(fs::exists(t.p / "j-1.ckpt.tmp")) << "the failed write left its temporary file";
  EXPECT_FALSE(fs::exists(target));
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

// Note [Server paths] (daemon/job_view.h): what a user reads of the server's errors.
TEST(HardeningUnit, UsersReadServerErrorsWithoutServerPaths) {
  daemon::ServerPaths paths;
  paths.add("/var/lib/wand/", "<state_dir>");
  paths.add("/var/lib/wand/spool", "<spool>");  // inside the state dir: its own label
  paths.add("/srv/models/i2v", "<model i2v>");
  paths.add("/", "<root>");                      // ignored: it would hide every path
  paths.add("/var/lib/wand/spool", "<pack_dir>");  // the same directory again: the first label stays
  const daemon::Peer user{1000, 1000, 1, false};
  const daemon::Peer admin{0, 0, 1, true};
  const std::string disk = "waiting for disk space: write /var/lib/wand/checkpoints/j-3.ckpt.tmp: No space left on device";
  EXPECT_EQ(daemon::user_message(user, paths, disk),
            "waiting for disk space: the daemon's disk is full (No space left on device); the job goes on from its "
            "last checkpoint once there is room");
  EXPECT_EQ(daemon::user_message(admin, paths, disk), disk) << "admins read it whole";
  EXPECT_EQ(daemon::disk_full_text("append /var/lib/wand/journal.jsonl: Disk quota exceeded", "nothing was changed"),
            "the daemon's disk is full (Disk quota exceeded); nothing was changed");
  EXPECT_EQ(daemon::user_message(user, paths, "io: read /srv/models/i2v/config.json: Permission denied"),
            "io: read <model i2v>/config.json: Permission denied");
  EXPECT_EQ(paths.hide("spool /var/lib/wand/spool/wand-spool-1-0.bin and /var/lib/wand: full"),
            "spool <spool>/wand-spool-1-0.bin and <state_dir>: full");
  // Whole path components only: another directory that starts with the same letters stays.
  EXPECT_EQ(paths.hide("open /srv/models/i2v-old/x and /var/lib/wandb/y"), "open /srv/models/i2v-old/x and /var/lib/wandb/y");
  EXPECT_EQ(daemon::user_message(user, paths, "17 is not a multiple of 16"), "17 is not a multiple of 16");
  const nlohmann::json tiers = {{{"kind", "disk"}, {"path", "/var/lib/wand/spool/wand-spool-7-0.bin"}, {"bytes", 5}}};
  EXPECT_EQ(paths.hide_json(tiers),
            nlohmann::json({{{"kind", "disk"}, {"path", "<spool>/wand-spool-7-0.bin"}, {"bytes", 5}}}));
}

}  // namespace
}  // namespace wand::sched
