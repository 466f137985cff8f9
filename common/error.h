// wand::Error: the one exception hierarchy of the project.
//
//   throw wand::Error(wand::ErrorCode::kModelFormat, fmt("{}: key {} missing", file, key));
//   throw wand::OutOfMemory("host", requested, free, largest);
//
// Libraries throw when an operation cannot finish; expected outcomes are values
// (optionals, status structs). Exceptions never cross a thread or the socket:
// boundaries catch, log once and answer with an error response.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace wand {

enum class ErrorCode {
  kOutOfMemory,
  kIo,
  kCuda,
  kBadRequest,
  kModelFormat,
  kConfig,
  kNotFound,
  kCancelled,
  kInternal,
};

// Stable lowercase name of a code ("out_of_memory", "io", ...), used on the wire.
const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// A tier allocation that does not fit. Carries what a caller needs to decide
// (evict and retry, spill elsewhere, or fail the job).
class OutOfMemory : public Error {
 public:
  OutOfMemory(std::string tier, std::uint64_t bytes_requested, std::uint64_t bytes_free,
              std::uint64_t bytes_largest_free, std::string hint = {});
  const std::string& tier() const { return tier_; }
  std::uint64_t bytes_requested() const { return bytes_requested_; }
  std::uint64_t bytes_free() const { return bytes_free_; }
  std::uint64_t bytes_largest_free() const { return bytes_largest_free_; }

 private:
  std::string tier_;
  std::uint64_t bytes_requested_;
  std::uint64_t bytes_free_;
  std::uint64_t bytes_largest_free_;
};

// Human-readable byte count ("670.0 MiB").
std::string format_bytes(std::uint64_t bytes);

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace wand

// Always on, cheap invariant checks. Throws wand::Error(kInternal).
#define WAND_ASSERT(cond, msg)                                              \
  do {                                                                      \
    if (!(cond)) ::wand::assert_fail(#cond, __FILE__, __LINE__, (msg));     \
  } while (0)

#ifdef NDEBUG
#define WAND_DCHECK(cond, msg) \
  do {                         \
  } while (0)
#else
#define WAND_DCHECK(cond, msg) WAND_ASSERT(cond, msg)
#endif
