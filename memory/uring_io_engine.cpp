#include "memory/uring_io_engine.h"

#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace wand::memory {

namespace {
constexpr std::uint64_t kWakeTag = 1;  // user_data of the eventfd read (chunks are pointers)
constexpr std::uint64_t kMaxFixedBytes = 1ull << 30;  // the kernel's per-buffer limit
}  // namespace

bool UringIoEngine::probe() {
  io_uring ring;
  if (io_uring_queue_init(4, &ring, 0) != 0) return false;
  bool ok = false;
  if (io_uring_probe* p = io_uring_get_probe_ring(&ring)) {
    ok = io_uring_opcode_supported(p, IORING_OP_READ) && io_uring_opcode_supported(p, IORING_OP_WRITE);
    io_uring_free_probe(p);
  }
  io_uring_queue_exit(&ring);
  return ok;
}

UringIoEngine::UringIoEngine(const IoEngineOptions& options)
    : depth_(options.queue_depth == 0 ? 1 : options.queue_depth),
      chunk_bytes_(options.chunk_bytes),
      ring_(std::make_unique<io_uring>()) {
  // One slot more than the chunk depth for the eventfd read.
  int rc = io_uring_queue_init(depth_ + 1, ring_.get(), 0);
  if (rc != 0) throw Error(ErrorCode::kIo, std::string("io_uring setup failed: ") + std::strerror(-rc));
  event_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (event_fd_ < 0) {
    io_uring_queue_exit(ring_.get());
    throw Error(ErrorCode::kIo, std::string("eventfd failed: ") + std::strerror(errno));
  }
  std::vector<iovec> pieces;
  for (const iovec& r : options.fixed_regions) {
    for (std::uint64_t off = 0; off < r.iov_len; off += kMaxFixedBytes) {
      pieces.push_back({static_cast<char*>(r.iov_base) + off, std::min<std::uint64_t>(kMaxFixedBytes, r.iov_len - off)});
    }
  }
  if (!pieces.empty()) {
    rc = io_uring_register_buffers(ring_.get(), pieces.data(), static_cast<unsigned>(pieces.size()));
    if (rc == 0) {
      fixed_ = pieces;
      for (const auto& p : pieces) bytes_registered_ += p.iov_len;
    } else {
      wand::log::get("io")->warn("io_uring buffer registration failed err={} bytes={} (plain reads)",
                                 std::strerror(-rc), pieces.size());
    }
  }
  thread_ = std::thread([this] { run(); });
}

UringIoEngine::~UringIoEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake();
  thread_.join();
  if (!fixed_.empty()) io_uring_unregister_buffers(ring_.get());
  io_uring_queue_exit(ring_.get());
  ::close(event_fd_);
}

void UringIoEngine::wake() {
  std::uint64_t one = 1;
  ssize_t w;
  do {
    w = ::write(event_fd_, &one, sizeof one);
  } while (w < 0 && errno == EINTR);
}

int UringIoEngine::fixed_index(const void* p, std::uint64_t n) const {
  const char* c = static_cast<const char*>(p);
  for (std::size_t i = 0; i < fixed_.size(); ++i) {
    const char* b = static_cast<const char*>(fixed_[i].iov_base);
    if (c >= b && c + n <= b + fixed_[i].iov_len) return static_cast<int>(i);
  }
  return -1;
}

Completion UringIoEngine::submit(IoRequest request) {
  auto op = std::make_shared<detail::IoOp>();
  op->req = std::move(request);
  Completion c = op->done.completion();
  auto chunks = detail::split_request(op, chunk_bytes_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push(std::move(chunks), op->req.urgent);
  }
  wake();
  return c;
}

void UringIoEngine::run() {
  io_uring* ring = ring_.get();
  auto arm_wake = [&] {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    io_uring_prep_read(sqe, event_fd_, &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data64(sqe, kWakeTag);
  };
  arm_wake();
  unsigned in_flight = 0;
  detail::IoQueue local;  // chunks to (re)submit, owned by this thread: demand first
  bool stopping = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (!queue_.empty()) local.push_back(queue_.pop());
      stopping = stop_;
    }
    // Fill the ring up to the depth.
    while (!local.empty() && in_flight < depth_) {
      detail::IoChunk chunk = local.pop();
      if (chunk.op->failed || chunk.len() == 0) {  // skip the rest of a failed request
        detail::chunk_finish(chunk);
        continue;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      const IoRequest& req = chunk.op->req;
      const int fi = fixed_index(chunk.buf(), chunk.len());
      const auto len = static_cast<unsigned>(chunk.len());
      if (req.write) {
        if (fi >= 0) io_uring_prep_write_fixed(sqe, req.fd, chunk.buf(), len, chunk.file_offset(), fi);
        else io_uring_prep_write(sqe, req.fd, chunk.buf(), len, chunk.file_offset());
      } else {
        if (fi >= 0) io_uring_prep_read_fixed(sqe, req.fd, chunk.buf(), len, chunk.file_offset(), fi);
        else io_uring_prep_read(sqe, req.fd, chunk.buf(), len, chunk.file_offset());
      }
      io_uring_sqe_set_data(sqe, new detail::IoChunk(std::move(chunk)));
      ++in_flight;
    }
    if (stopping && in_flight == 0 && local.empty()) break;
    int rc = io_uring_submit_and_wait(ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      wand::log::get("io")->error("io_uring submit failed err={}", std::strerror(-rc));
    }
    io_uring_cqe* cqe = nullptr;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++seen;
      if (cqe->user_data == kWakeTag) {
        arm_wake();
        continue;
      }
      std::unique_ptr<detail::IoChunk> chunk(static_cast<detail::IoChunk*>(io_uring_cqe_get_data(cqe)));
      --in_flight;
      if (detail::chunk_progress(*chunk, cqe->res) == detail::ChunkStep::kResubmit) {
        local.push_front(std::move(*chunk));
      } else {
        detail::chunk_finish(*chunk);
      }
    }
    io_uring_cq_advance(ring, seen);
  }
}

}  // namespace wand::memory
