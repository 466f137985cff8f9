// Small helpers the benchmark binaries share (bench/exec, bench/multigpu).
//
//   auto t0 = wand::bench::Clock::now();  ...;  double s = wand::bench::since(t0);
//   std::uint64_t hwm = wand::bench::proc_status_bytes("VmHWM:");   // peak RSS, bytes
//
// Header-only; any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

namespace wand::bench {

using Clock = std::chrono::steady_clock;

inline double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A "<key> <n> kB" line of /proc/self/status in bytes ("VmHWM:", "VmRSS:"); 0 when absent.
inline std::uint64_t proc_status_bytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = key;
  while (std::getline(f, line)) {
    if (line.rfind(k, 0) == 0) return std::stoull(line.substr(k.size())) * 1024;
  }
  return 0;
}

}  // namespace wand::bench
