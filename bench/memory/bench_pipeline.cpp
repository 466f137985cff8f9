// bench_pipeline: disk -> host -> device of one 670 MiB blob, pipelined (chunks read by the
// IoEngine into pinned host memory, each copied to the device as soon as it lands, while
// the next chunks are read), against its parts measured separately in the same run:
// disk -> host alone, host -> device alone, their sum, and the MemoryPool's request()
// chain. The device is the CUDA tier on a GPU machine, the CPU device tier elsewhere
// (--device cpu forces it). Checks the bytes that arrive; exit 0 on success, 1 on error.
//
//   bench_pipeline --file /data/blob.bin [--bytes 670MiB] [--chunk 16MiB] [--reps 3]
#include <memory>
#include <vector>

#include "bench/memory/bench_util.h"
#include "common/error.h"
#include "common/log.h"
#include "memory/cpu_device_tier.h"
#include "memory/host_tier.h"
#include "memory/io_engine.h"
#include "memory/memory_pool.h"
#include "memory/pool_config.h"

#include <nlohmann/json.hpp>
#ifdef WAND_HAVE_CUDA
#include "memory/cuda/cuda_tier.h"
#include "memory/cuda/pinned_host.h"
#endif

using namespace wand;
using namespace wand::memory;

int main(int argc, char** argv) {
  wand::log::set_level("error");
  const std::string path = bench::arg(argc, argv, "file", "");
  if (path.empty()) {
    std::fprintf(stderr, "usage: bench_pipeline --file PATH [--bytes 670MiB] [--chunk 16MiB] [--reps 3] [--device cpu]\n");
    return 2;
  }
  try {
    const std::uint64_t bytes = parse_bytes(bench::arg(argc, argv, "bytes", "670MiB"), "--bytes") & ~4095ull;
    const std::uint64_t chunk = parse_bytes(bench::arg(argc, argv, "chunk", "16MiB"), "--chunk");
    const int reps = std::stoi(bench::arg(argc, argv, "reps", "3"));
    if (chunk == 0 || chunk % 4096) throw Error(ErrorCode::kConfig, "--chunk must be a multiple of 4 KiB");
    if (bench::file_size(path) < bytes && !bench::ensure_file(path, bytes)) return 1;

    bool use_cuda = false;
    HostRegionFactory host_factory = map_locked_host_region;
#ifdef WAND_HAVE_CUDA
    use_cuda = bench::arg(argc, argv, "device", "auto") != "cpu" && cuda::device_count() > 0;
    if (use_cuda) host_factory = cuda::pinned_host_region;
#endif
    HostRegion host = host_factory(bytes);
    std::unique_ptr<DeviceTier> dev;
#ifdef WAND_HAVE_CUDA
    if (use_cuda) dev = std::make_unique<cuda::CudaTier>(0, bytes);
#endif
    if (!dev) dev = std::make_unique<CpuDeviceTier>(0, bytes);
    IoEngineOptions io;
    io.queue_depth = 32;
    io.chunk_bytes = std::min<std::uint64_t>(chunk, 4ull << 20);
    io.fixed_regions.push_back({host.data, host.bytes});
    auto engine = make_io_engine(io);
    bool direct = false;
    const int fd = open_for_read(path, &direct);
    std::printf("bench_pipeline file=%s blob=%s chunk=%s device=%s host=%s io=%s direct=%s fixed=%s reps=%d\n\n",
                path.c_str(), format_bytes(bytes).c_str(), format_bytes(chunk).c_str(), dev->backend(), host.how,
                engine->name(), direct ? "yes" : "no", engine->bytes_registered() ? "yes" : "no", reps);

    auto read_all = [&] {
      IoRequest r;
      r.fd = fd;
      r.path = path;
      r.direct = direct;
      r.buf = host.data;
      r.bytes = bytes;
      engine->submit(r).wait();
    };
    auto best = [&](auto&& f) {
      double b = 1e30;
      for (int i = 0; i < reps; ++i) {
        const double t0 = bench::now_s();
        f();
        b = std::min(b, bench::now_s() - t0);
      }
      return b;
    };
    const double t_disk = best(read_all);
    const auto* h8 = reinterpret_cast<const std::uint8_t*>(host.data);
    std::vector<std::uint8_t> reference(h8, h8 + std::min<std::uint64_t>(bytes, 64ull << 20));
    const double t_h2d = best([&] { dev->copy_in(host.data, 0, bytes).wait(); });

    auto pipelined = [&] {
      std::vector<Completion> done;
      for (std::uint64_t off = 0; off < bytes; off += chunk) {
        const std::uint64_t n = std::min(chunk, bytes - off);
        IoRequest r;
        r.fd = fd;
        r.path = path;
        r.direct = direct;
        r.file_offset = off;
        r.buf = host.data + off;
        r.bytes = n;
        CompletionSource src;
        done.push_back(src.completion());
        engine->submit(r).then([&, off, n, src](const std::exception_ptr& err) mutable {
          if (err) return src.fail(err);
          try {
            dev->copy_in(host.data + off, off, n).then([src](const std::exception_ptr& e2) mutable { src.fail(e2); });
          } catch (...) {
            src.fail(std::current_exception());
          }
        });
      }
      Completion::all(done).wait();
    };
    const double t_pipe = best(pipelined);
    // Check what arrived (the first 64 MiB).
    std::vector<std::uint8_t> back(reference.size());
    dev->copy_out(0, back.data(), back.size()).wait();
    if (back != reference) {
      std::fprintf(stderr, "bench_pipeline: device bytes differ from the file\n");
      return 1;
    }

    // The pool's request() chain (whole disk read, then the whole H2D).
    double t_pool = 0;
    {
      PoolConfig cfg;
      cfg.host_bytes = bytes;
      cfg.devices = {{0, bytes, use_cuda ? "cuda" : "cpu"}};
      cfg.io = io;
      cfg.io.fixed_regions.clear();
      host.release(host.data, host.bytes);  // give the pinned memory back before the pool takes its own
      host.data = nullptr;
      dev.reset();
      PoolDeps deps;
#ifdef WAND_HAVE_CUDA
      if (use_cuda) deps = cuda::pool_deps();
#endif
      MemoryPool pool(cfg, deps);
      const BlobId b = pool.register_file_blob("blob", path, 0, bytes);
      const int d = pool.device_tier(0);
      t_pool = best([&] {
        pool.request(b, d).wait();
        pool.evict(b, d);
        pool.evict(b, pool.host_tier());
      });
    }
    const double gb = bytes / 1e9;
    std::printf("| leg | seconds | GB/s |\n|---|---|---|\n");
    std::printf("| disk -> host (alone) | %.3f | %.2f |\n", t_disk, gb / t_disk);
    std::printf("| host -> device (alone) | %.3f | %.2f |\n", t_h2d, gb / t_h2d);
    std::printf("| sum of the parts | %.3f | %.2f |\n", t_disk + t_h2d, gb / (t_disk + t_h2d));
    std::printf("| ideal overlap (max of the parts) | %.3f | %.2f |\n", std::max(t_disk, t_h2d),
                gb / std::max(t_disk, t_h2d));
    std::printf("| pipelined (chunk %s) | %.3f | %.2f |\n", format_bytes(chunk).c_str(), t_pipe, gb / t_pipe);
    std::printf("| MemoryPool::request chain | %.3f | %.2f |\n", t_pool, gb / t_pool);
    std::printf("\npipelined / sum of parts = %.2f (lower is better; ideal %.2f)\n", t_pipe / (t_disk + t_h2d),
                std::max(t_disk, t_h2d) / (t_disk + t_h2d));
    ::close(fd);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: %s\n", e.what());
    return 1;
  }
  return 0;
}
