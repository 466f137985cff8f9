// IoEngine: moves bytes between a file and host memory, asynchronously. The memory
// pool uses it for disk -> host (file-backed blobs, the disk tier) and host -> disk
// (spills). UringIoEngine (io_uring, O_DIRECT, registered buffers, many requests in
// flight) is chosen at start-up when the kernel has it; PsyncIoEngine (pread/pwrite on
// a few threads) otherwise. See Note [Chunked direct I/O].
//
//   auto engine = make_io_engine({});               // probes io_uring, falls back to pread
//   Completion c = engine->submit({fd, path, file_offset, dst, bytes});
//   c.wait();                                       // throws IoError naming file and offset
//
// Threads: submit() from any thread; completions fire on the engine's own thread(s).
// The buffer must stay valid until the completion finishes (also on failure: a failed
// request completes only once none of its pieces is still in flight).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <sys/uio.h>
#include <vector>

#include "common/error.h"
#include "memory/completion.h"

namespace wand::memory {

// Note [Chunked direct I/O]
// A request is split into chunks of IoEngineOptions::chunk_bytes (default 4 MiB) so that
// one large blob (a 670 MiB DiT block) keeps queue_depth reads in flight at once: the
// NVMe queue stays full and the first chunks are usable early. With O_DIRECT the file
// offset, the buffer address and the length must be block aligned, so the pool reads an
// aligned superset of an unaligned blob straight into its (aligned) host extent and points
// at the first useful byte, instead of copying through a bounce buffer. Example: a tensor
// at file offset 10,000 of 5,000 bytes is read as [8,192, 16,384) into an 8 KiB extent and
// starts at byte 1,808 of it. The aligned tail may run past the end of the file: a short
// read is fine once `bytes_required` bytes have arrived (bytes 0..6,808 here). A short read
// before that is requeued from where it stopped; one that stops at an unaligned offset (or
// returns 0) is the end of the file: the request fails with IoError naming file and offset.

struct IoRequest {
  int fd = -1;
  std::string path;                // for error messages
  std::uint64_t file_offset = 0;
  void* buf = nullptr;
  std::uint64_t bytes = 0;
  std::uint64_t bytes_required = ~std::uint64_t{0};  // reads: min(bytes, this) must arrive
  bool write = false;
  bool direct = true;              // fd opened with O_DIRECT (alignment rules apply)
  bool urgent = false;             // a demand: its chunks go ahead of queued prefetches
};

// An I/O failure: carries the file, the offset of the failing piece and the errno.
class IoError : public Error {
 public:
  IoError(std::string path, std::uint64_t offset, int err, const std::string& what);
  const std::string& path() const { return path_; }
  std::uint64_t offset() const { return offset_; }
  int err() const { return err_; }

 private:
  std::string path_;
  std::uint64_t offset_;
  int err_;
};

struct IoEngineOptions {
  std::string kind = "auto";        // "auto" | "io_uring" | "psync"
  unsigned queue_depth = 32;        // chunks in flight (io_uring) per engine
  std::uint64_t chunk_bytes = 4ull << 20;
  unsigned psync_threads = 4;
  // Host regions to register as io_uring fixed buffers (split into <= 1 GiB pieces);
  // registration failure (RLIMIT_MEMLOCK, ...) is logged and falls back to plain reads.
  std::vector<iovec> fixed_regions;
};

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  virtual const char* name() const = 0;  // "io_uring" | "psync"
  virtual Completion submit(IoRequest request) = 0;
  // Bytes of registered fixed buffers (0 for psync or when registration failed).
  virtual std::uint64_t bytes_registered() const { return 0; }
};

// True when io_uring works here (ring setup and IORING_OP_READ/WRITE supported).
bool io_uring_available();
// Picks the engine: "auto" probes io_uring and falls back to psync (logged once);
// "io_uring" throws wand::Error(kConfig) when it is unavailable.
std::unique_ptr<IoEngine> make_io_engine(const IoEngineOptions& options);

// Opens a file for reading with O_DIRECT (falls back to buffered where O_DIRECT is not
// supported, e.g. tmpfs). Throws IoError naming the file. *direct tells which.
int open_for_read(const std::string& path, bool* direct);

}  // namespace wand::memory
