#include "memory/io_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>

#include "memory/detail/io_op.h"
#include "memory/detail/io_queue.h"
#include "tests/memory/test_util.h"

namespace wand::memory {
namespace {

using testing::TempDir;

struct AlignedBuf {
  explicit AlignedBuf(std::size_t n) : bytes(n) {
    p = static_cast<std::uint8_t*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096 + 4096));
  }
  ~AlignedBuf() { std::free(p); }
  std::uint8_t* p;
  std::size_t bytes;
};

class IoEngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "io_uring" && !io_uring_available()) GTEST_SKIP() << "io_uring unavailable here";
    IoEngineOptions o;
    o.kind = GetParam();
    o.queue_depth = 8;
    o.chunk_bytes = 64 * 1024;  // small, so blobs span many chunks in flight
    engine_ = make_io_engine(o);
    ASSERT_STREQ(engine_->name(), GetParam().c_str());
  }
  std::unique_ptr<IoEngine> engine_;
};

// Random blobs with odd sizes and offsets, read as aligned supersets (Note [Chunked direct
// I/O]) with many requests in flight, equal the source bytes. Some reach the end of file.
TEST_P(IoEngineTest, RandomUnalignedReadsEqualTheSource) {
  TempDir dir;
  const std::size_t file_bytes = 3 * 1024 * 1024 + 777;
  const std::string path = dir.file("src.bin");
  const auto src = testing::write_random_file(path, file_bytes, 42);
  bool direct = false;
  const int fd = open_for_read(path, &direct);
  std::mt19937_64 rng(1);
  struct Case {
    std::uint64_t off, n, head;
    std::unique_ptr<AlignedBuf> buf;
    Completion done;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 40; ++i) {
    Case c;
    c.off = rng() % file_bytes;
    c.n = 1 + rng() % std::min<std::uint64_t>(file_bytes - c.off, 700 * 1024);
    if (i % 10 == 0) c.n = file_bytes - c.off;  // up to the end of the file
    const std::uint64_t aoff = c.off & ~4095ull;
    c.head = c.off - aoff;
    const std::uint64_t alen = ((c.off + c.n + 4095) & ~4095ull) - aoff;
    c.buf = std::make_unique<AlignedBuf>(alen);
    IoRequest r;
    r.fd = fd;
    r.path = path;
    r.direct = direct;
    r.file_offset = aoff;
    r.buf = c.buf->p;
    r.bytes = alen;
    r.bytes_required = c.head + c.n;
    c.done = engine_->submit(r);
    cases.push_back(std::move(c));
  }
  for (auto& c : cases) {
    ASSERT_NO_THROW(c.done.wait()) << "off=" << c.off << " n=" << c.n;
    ASSERT_EQ(std::memcmp(c.buf->p + c.head, src.data() + c.off, c.n), 0) << "off=" << c.off << " n=" << c.n;
  }
  ::close(fd);
}

TEST_P(IoEngineTest, WritesThenReadsBack) {
  TempDir dir;
  const std::string path = dir.file("spool.bin");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  bool direct = fd >= 0;
  if (fd < 0) fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  const std::size_t n = 1024 * 1024 + 8192;
  AlignedBuf out(n), in(n);
  const auto data = testing::random_bytes(n, 9);
  std::memcpy(out.p, data.data(), n);
  IoRequest w;
  w.fd = fd;
  w.path = path;
  w.direct = direct;
  w.write = true;
  w.file_offset = 8192;
  w.buf = out.p;
  w.bytes = n;
  engine_->submit(w).wait();
  IoRequest r = w;
  r.write = false;
  r.buf = in.p;
  engine_->submit(r).wait();
  EXPECT_EQ(std::memcmp(in.p, data.data(), n), 0);
  ::close(fd);
}

// A file truncated under a request fails that request with an IoError naming the file and
// an offset inside the missing range; the engine keeps serving other requests.
TEST_P(IoEngineTest, TruncatedFileFailsWithFileAndOffset) {
  TempDir dir;
  const std::string path = dir.file("trunc.bin");
  const auto src = testing::write_random_file(path, 1 << 20, 5);
  bool direct = false;
  const int fd = open_for_read(path, &direct);
  ASSERT_EQ(::truncate(path.c_str(), 700001), 0);
  AlignedBuf buf(1 << 20);
  IoRequest r;
  r.fd = fd;
  r.path = path;
  r.direct = direct;
  r.file_offset = 512 * 1024;
  r.buf = buf.p;
  r.bytes = 512 * 1024;
  try {
    engine_->submit(r).wait();
    FAIL() << "read past the end of a truncated file succeeded";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_GE(e.offset(), 512u * 1024);
    EXPECT_LE(e.offset(), 1u << 20);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("offset"), std::string::npos);
  }
  // The bytes before the cut are still readable.
  r.file_offset = 0;
  r.bytes = 512 * 1024;
  engine_->submit(r).wait();
  EXPECT_EQ(std::memcmp(buf.p, src.data(), 512 * 1024), 0);
  ::close(fd);
}

TEST_P(IoEngineTest, BadDescriptorIsReported) {
  AlignedBuf buf(4096);
  IoRequest r;
  r.fd = 1000000;
  r.path = "/nonexistent/fd";
  r.buf = buf.p;
  r.bytes = 4096;
  Completion c = engine_->submit(r);
  EXPECT_THROW(c.wait(), IoError);
  EXPECT_TRUE(c.failed());
}

INSTANTIATE_TEST_SUITE_P(Engines, IoEngineTest, ::testing::Values("io_uring", "psync"),
                         [](const auto& p) { return p.param; });

TEST(IoEngine, OpenForReadNamesMissingFile) {
  try {
    open_for_read("/nonexistent/wand/file.safetensors", nullptr);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/wand/file.safetensors"), std::string::npos);
  }
}

TEST(IoEngine, UnknownEngineIsAConfigError) {
  IoEngineOptions o;
  o.kind = "aio";
  EXPECT_THROW(make_io_engine(o), wand::Error);
}

// The chunk rule itself: short reads are requeued from where they stopped, an EOF before
// the required bytes fails, a tail past the required bytes is fine.
TEST(IoChunk, ShortReadsAreRequeuedAndEofIsAnError) {
  auto op = std::make_shared<detail::IoOp>();
  op->req.path = "f";
  op->req.file_offset = 0;
  op->req.bytes = 3 * 8192;
  op->req.bytes_required = 2 * 8192 + 100;
  auto chunks = detail::split_request(op, 8192);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2].required_end, 2u * 8192 + 100);
  // Chunk 0: a short aligned read is requeued, then finishes.
  EXPECT_EQ(detail::chunk_progress(chunks[0], 4096), detail::ChunkStep::kResubmit);
  EXPECT_EQ(chunks[0].pos, 4096u);
  EXPECT_EQ(detail::chunk_progress(chunks[0], -EINTR), detail::ChunkStep::kResubmit);
  EXPECT_EQ(detail::chunk_progress(chunks[0], 4096), detail::ChunkStep::kDone);
  // Chunk 2: the file ends after the required bytes: done, no error.
  EXPECT_EQ(detail::chunk_progress(chunks[2], 200), detail::ChunkStep::kDone);
  EXPECT_FALSE(op->failed);
  // Chunk 1: stops unaligned before its end -> end of file -> failure.
  EXPECT_EQ(detail::chunk_progress(chunks[1], 100), detail::ChunkStep::kDone);
  EXPECT_TRUE(op->failed);
  for (auto& c : chunks) detail::chunk_finish(c);
  Completion done = op->done.completion();
  ASSERT_TRUE(done.done());
  try {
    done.wait();
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(e.offset(), 8192u + 100);
  }
}

// Demand before prefetch: urgent chunks leave the queue first, each class in order, and a
// requeued chunk goes back to the head of its class.
TEST(IoQueue, DemandGoesAheadOfPrefetch) {
  auto prefetch = std::make_shared<detail::IoOp>();
  prefetch->req.bytes = 4 * 4096;
  auto demand = std::make_shared<detail::IoOp>();
  demand->req.bytes = 2 * 4096;
  demand->req.urgent = true;
  detail::IoQueue q;
  q.push(detail::split_request(prefetch, 4096), false);
  detail::IoChunk first = q.pop();  // a prefetch chunk already on its way
  EXPECT_EQ(first.op, prefetch);
  q.push(detail::split_request(demand, 4096), true);
  EXPECT_EQ(q.size(), 5u);
  std::vector<std::pair<bool, std::uint64_t>> order;  // (urgent, pos)
  detail::IoChunk d0 = q.pop();
  EXPECT_EQ(d0.op, demand);
  EXPECT_EQ(d0.pos, 0u);
  d0.pos += 100;
  q.push_front(d0);  // short read: requeued at the head of the demand class
  while (!q.empty()) {
    detail::IoChunk c = q.pop();
    order.emplace_back(c.op->req.urgent, c.pos);
  }
  const std::vector<std::pair<bool, std::uint64_t>> want = {
      {true, 100}, {true, 4096}, {false, 4096}, {false, 8192}, {false, 12288}};
  EXPECT_EQ(order, want);
}

}  // namespace
}  // namespace wand::memory
