#include "common/error.h"

#include <cstdio>

namespace wand {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOutOfMemory: return "out_of_memory";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kCuda: return "cuda";
    case ErrorCode::kBadRequest: return "bad_request";
    case ErrorCode::kModelFormat: return "model_format";
    case ErrorCode::kConfig: return "config";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

Error::Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

std::string format_bytes(std::uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

static std::string oom_message(const std::string& tier, std::uint64_t req, std::uint64_t free,
                               std::uint64_t largest, const std::string& hint) {
  std::string m = "out of memory on tier " + tier + ": requested " + format_bytes(req) + ", free " +
                  format_bytes(free) + ", largest free extent " + format_bytes(largest);
  if (!hint.empty()) m += " (" + hint + ")";
  return m;
}

OutOfMemory::OutOfMemory(std::string tier, std::uint64_t bytes_requested, std::uint64_t bytes_free,
                         std::uint64_t bytes_largest_free, std::string hint)
    : Error(ErrorCode::kOutOfMemory,
            oom_message(tier, bytes_requested, bytes_free, bytes_largest_free, hint)),
      tier_(std::move(tier)),
      bytes_requested_(bytes_requested),
      bytes_free_(bytes_free),
      bytes_largest_free_(bytes_largest_free) {}

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
  throw Error(ErrorCode::kInternal,
              std::string("assertion failed: ") + expr + " at " + file + ":" + std::to_string(line) +
                  (msg.empty() ? "" : ": " + msg));
}

}  // namespace wand
