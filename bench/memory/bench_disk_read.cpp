// bench_disk_read: disk -> host GB/s of the IoEngines with O_DIRECT: io_uring across queue
// depths (1, 4, 16, 64) and chunk sizes (128 KiB, 1 MiB, 8 MiB), and beside it the pread
// engine. Prints one markdown table; exit code 0 on success, 1 on a read error.
//
//   bench_disk_read --file /data/test.bin [--size 2GiB] [--passes 1]
//
// The file is created when missing (pseudo-random bytes). Reads go into one host buffer
// (mmap + mlock best effort, registered with io_uring when RLIMIT_MEMLOCK allows), cycling
// through its slots, with enough requests outstanding to keep the engine's queue full.
#include <sys/mman.h>

#include <deque>

#include "bench/memory/bench_util.h"
#include "common/error.h"
#include "common/log.h"
#include "memory/host_tier.h"
#include "memory/io_engine.h"
#include "memory/pool_config.h"

#include <nlohmann/json.hpp>

using namespace wand;
using namespace wand::memory;

namespace {

struct Result {
  double gbps;
  std::uint64_t registered;
};

Result run(const std::string& kind, const std::string& path, std::uint64_t file_bytes, unsigned qd,
           std::uint64_t block, unsigned threads) {
  const std::uint64_t slot = std::max<std::uint64_t>(block, 32ull << 20);
  const std::uint64_t nslots = std::max<std::uint64_t>(4, (2ull * qd * block + slot - 1) / slot);
  HostRegion buf = map_locked_host_region(slot * nslots);
  IoEngineOptions o;
  o.kind = kind;
  o.queue_depth = qd;
  o.chunk_bytes = block;
  o.psync_threads = threads;
  o.fixed_regions.push_back({buf.data, buf.bytes});
  Result r{0, 0};
  {
    auto engine = make_io_engine(o);
    r.registered = engine->bytes_registered();
    bool direct = false;
    const int fd = open_for_read(path, &direct);
    std::deque<Completion> outstanding;
    const double t0 = bench::now_s();
    std::uint64_t off = 0;
    std::uint64_t s = 0;
    while (off < file_bytes) {
      if (outstanding.size() == nslots) {
        outstanding.front().wait();
        outstanding.pop_front();
      }
      IoRequest q;
      q.fd = fd;
      q.path = path;
      q.direct = direct;
      q.file_offset = off;
      q.buf = buf.data + (s % nslots) * slot;
      q.bytes = std::min(slot, file_bytes - off);
      outstanding.push_back(engine->submit(q));
      off += q.bytes;
      ++s;
    }
    for (auto& c : outstanding) c.wait();
    const double dt = bench::now_s() - t0;
    r.gbps = file_bytes / dt / 1e9;
    ::close(fd);
  }
  buf.release(buf.data, buf.bytes);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  wand::log::set_level("error");
  const std::string path = bench::arg(argc, argv, "file", "");
  if (path.empty()) {
    std::fprintf(stderr, "usage: bench_disk_read --file PATH [--size 2GiB] [--passes 1]\n");
    return 2;
  }
  try {
    const std::uint64_t size = parse_bytes(bench::arg(argc, argv, "size", "2GiB"), "--size");
    if (bench::file_size(path) < size && !bench::ensure_file(path, size)) return 1;
    const std::uint64_t bytes = std::min(size, bench::file_size(path)) & ~4095ull;
    const int passes = std::stoi(bench::arg(argc, argv, "passes", "1"));
    std::printf("bench_disk_read file=%s bytes=%s io_uring=%s\n\n", path.c_str(), format_bytes(bytes).c_str(),
                io_uring_available() ? "yes" : "no");
    std::printf("| engine | queue depth / threads | chunk | GB/s | fixed buffers |\n");
    std::printf("|---|---|---|---|---|\n");
    const std::uint64_t blocks[] = {128ull << 10, 1ull << 20, 8ull << 20};
    auto print = [&](const char* engine, unsigned qd, std::uint64_t block, unsigned threads) {
      double best = 0;
      Result r{};
      for (int p = 0; p < passes; ++p) {
        r = run(engine, path, bytes, qd, block, threads);
        best = std::max(best, r.gbps);
      }
      std::printf("| %s | %u | %s | %.2f | %s |\n", engine, std::strcmp(engine, "psync") ? qd : threads,
                  format_bytes(block).c_str(), best, r.registered ? "yes" : "no");
      std::fflush(stdout);
    };
    if (io_uring_available()) {
      for (unsigned qd : {1u, 4u, 16u, 64u})
        for (std::uint64_t b : blocks) print("io_uring", qd, b, 1);
    }
    for (unsigned t : {1u, 4u})
      for (std::uint64_t b : blocks) print("psync", 1, b, t);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_disk_read: %s\n", e.what());
    return 1;
  }
  return 0;
}
