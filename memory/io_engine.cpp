#include "memory/io_engine.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "memory/detail/io_op.h"
#include "memory/psync_io_engine.h"
#ifdef WAND_HAVE_IO_URING
#include "memory/uring_io_engine.h"
#endif

namespace wand::memory {

IoError::IoError(std::string path, std::uint64_t offset, int err, const std::string& what)
    : Error(ErrorCode::kIo, what + ": file " + path + " offset " + std::to_string(offset) + ": " +
                                std::strerror(err)),
      path_(std::move(path)),
      offset_(offset),
      err_(err) {}

bool io_uring_available() {
#ifdef WAND_HAVE_IO_URING
  return UringIoEngine::probe();
#else
  return false;
#endif
}

std::unique_ptr<IoEngine> make_io_engine(const IoEngineOptions& options) {
  auto log = wand::log::get("io");
  if (options.kind != "auto" && options.kind != "io_uring" && options.kind != "psync") {
    throw Error(ErrorCode::kConfig, "io.engine: unknown engine '" + options.kind +
                                        "' (expected auto, io_uring or psync)");
  }
  if (options.kind != "psync") {
    if (io_uring_available()) {
#ifdef WAND_HAVE_IO_URING
      log->info("io engine=io_uring queue_depth={} chunk={}", options.queue_depth,
                format_bytes(options.chunk_bytes));
      return std::make_unique<UringIoEngine>(options);
#endif
    }
    if (options.kind == "io_uring") {
      throw Error(ErrorCode::kConfig, "io.engine: io_uring requested but unavailable here");
    }
    log->warn("io_uring unavailable, using pread engine");
  }
  log->info("io engine=psync threads={} chunk={}", options.psync_threads,
            format_bytes(options.chunk_bytes));
  return std::make_unique<PsyncIoEngine>(options);
}

int open_for_read(const std::string& path, bool* direct) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  bool is_direct = fd >= 0;
  if (fd < 0 && errno == EINVAL) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, 0, errno, "cannot open");
  if (direct) *direct = is_direct;
  return fd;
}

namespace detail {

std::vector<IoChunk> split_request(const std::shared_ptr<IoOp>& op, std::uint64_t chunk_bytes) {
  std::vector<IoChunk> chunks;
  const std::uint64_t n = op->req.bytes;
  const std::uint64_t required = op->req.write ? n : std::min(n, op->req.bytes_required);
  if (chunk_bytes == 0 || chunk_bytes > (1ull << 30)) chunk_bytes = 1ull << 30;
  std::uint64_t pos = 0;
  do {
    IoChunk c;
    c.op = op;
    c.pos = pos;
    c.end = std::min(n, pos + chunk_bytes);
    c.required_end = std::min(c.end, std::max(required, pos));
    chunks.push_back(c);
    pos = c.end;
  } while (pos < n);
  op->chunks_left = chunks.size();
  return chunks;
}

namespace {
void record_failure(IoOp& op, std::exception_ptr err) {
  std::lock_guard<std::mutex> lock(op.mu);
  if (!op.error) op.error = std::move(err);
  op.failed = true;
}
}  // namespace

ChunkStep chunk_progress(IoChunk& chunk, std::int64_t res) {
  IoOp& op = *chunk.op;
  const char* verb = op.req.write ? "write failed" : "read failed";
  if (res == -EINTR || res == -EAGAIN) return ChunkStep::kResubmit;
  if (res < 0) {
    record_failure(op, std::make_exception_ptr(IoError(op.req.path, chunk.file_offset(),
                                                        static_cast<int>(-res), verb)));
    return ChunkStep::kDone;
  }
  chunk.pos += static_cast<std::uint64_t>(res);
  if (chunk.pos >= chunk.end) return ChunkStep::kDone;
  if (!op.req.write && chunk.pos >= chunk.required_end) return ChunkStep::kDone;  // EOF tail
  // Short transfer before the required end. With O_DIRECT a read that stops unaligned has
  // hit the end of the file; a 0-byte result always has.
  const bool unaligned = op.req.direct && (chunk.file_offset() % 4096 != 0);
  if (res == 0 || (unaligned && !op.req.write)) {
    record_failure(op, std::make_exception_ptr(IoError(
                           op.req.path, chunk.file_offset(), op.req.write ? EIO : ENODATA,
                           op.req.write ? "write made no progress"
                                        : "unexpected end of file (needs bytes up to offset " +
                                              std::to_string(op.req.file_offset + chunk.required_end) +
                                              ")")));
    return ChunkStep::kDone;
  }
  return ChunkStep::kResubmit;
}

void chunk_finish(IoChunk& chunk) {
  IoOp& op = *chunk.op;
  if (--op.chunks_left == 0) {
    std::exception_ptr err;
    {
      std::lock_guard<std::mutex> lock(op.mu);
      err = op.error;
    }
    op.done.fail(err);
  }
}

}  // namespace detail
}  // namespace wand::memory
