// Shared bookkeeping of the IoEngines: a request split into chunks and the rule that
// decides, from one syscall / CQE result, whether a chunk is done, must be requeued, or
// failed. See Note [Chunked direct I/O] in memory/io_engine.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "memory/io_engine.h"

namespace wand::memory::detail {

struct IoOp {
  IoRequest req;
  CompletionSource done;
  std::atomic<std::size_t> chunks_left{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::exception_ptr error;  // guarded by mu: the first failure
};

struct IoChunk {
  std::shared_ptr<IoOp> op;
  std::uint64_t pos = 0;           // next byte, relative to the request
  std::uint64_t end = 0;           // end of the chunk, relative to the request
  std::uint64_t required_end = 0;  // reads: bytes before this must arrive

  std::uint64_t file_offset() const { return op->req.file_offset + pos; }
  void* buf() const { return static_cast<char*>(op->req.buf) + pos; }
  std::uint64_t len() const { return end - pos; }
};

// Splits a request into chunks (at least one, even for 0 bytes).
std::vector<IoChunk> split_request(const std::shared_ptr<IoOp>& op, std::uint64_t chunk_bytes);

enum class ChunkStep { kDone, kResubmit };
// Applies one result (bytes moved, or -errno). kDone also when the chunk failed (the
// failure is recorded on the op).
ChunkStep chunk_progress(IoChunk& chunk, std::int64_t res);
// Marks the chunk finished; the last one completes the op (with its first failure).
void chunk_finish(IoChunk& chunk);

}  // namespace wand::memory::detail
