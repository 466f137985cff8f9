#include "memory/psync_io_engine.h"

#include <unistd.h>

#include <cerrno>

namespace wand::memory {

PsyncIoEngine::PsyncIoEngine(const IoEngineOptions& options)
    : chunk_bytes_(options.chunk_bytes) {
  const unsigned n = options.psync_threads == 0 ? 1 : options.psync_threads;
  for (unsigned i = 0; i < n; ++i) workers_.emplace_back([this] { run(); });
}

PsyncIoEngine::~PsyncIoEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

Completion PsyncIoEngine::submit(IoRequest request) {
  auto op = std::make_shared<detail::IoOp>();
  op->req = std::move(request);
  Completion c = op->done.completion();
  auto chunks = detail::split_request(op, chunk_bytes_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push(std::move(chunks), op->req.urgent);
  }
  cv_.notify_all();
  return c;
}

void PsyncIoEngine::run() {
  for (;;) {
    detail::IoChunk chunk;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      chunk = queue_.pop();
    }
    const IoRequest& req = chunk.op->req;
    while (!chunk.op->failed && chunk.len() > 0) {
      ssize_t r = req.write
                      ? ::pwrite(req.fd, chunk.buf(), chunk.len(), static_cast<off_t>(chunk.file_offset()))
                      : ::pread(req.fd, chunk.buf(), chunk.len(), static_cast<off_t>(chunk.file_offset()));
      const std::int64_t res = r < 0 ? -static_cast<std::int64_t>(errno) : r;
      if (detail::chunk_progress(chunk, res) == detail::ChunkStep::kDone) break;
    }
    detail::chunk_finish(chunk);
  }
}

}  // namespace wand::memory
