// Where the tests find the golden reference set (issue 14), and the one-line failure when a
// piece of it is missing.
//
// The set lives in the repository (tests/data/golden, a copy of the steering repo's
// shared/golden with its README, MANIFEST.json and sha256 sums), so a fresh clone has it.
// WAND_GOLDEN_DIR points elsewhere: as an environment variable when a test runs (wins), or as
// the CMake cache variable when the suite is configured (the compiled-in default).
//
//   const fs::path dir = wand::test::golden_path("dit_t2v");     // no check
//   WAND_REQUIRE_DATA(dir / "case.json");                       // fails the test in one line
//
// The data is part of the checkout, so missing data is a damaged checkout or a wrong
// WAND_GOLDEN_DIR: the test FAILS naming the path (no skip that would hide it, no crash, no
// cascade of assertions over data that was never read). GPU tests still skip without a GPU.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace wand::test {

inline std::filesystem::path golden_root() {
  if (const char* e = std::getenv("WAND_GOLDEN_DIR"); e != nullptr && *e != '\0') return e;
  return WAND_GOLDEN_DIR_DEFAULT;
}

inline std::filesystem::path golden_path(const std::string& rel) { return golden_root() / rel; }

}  // namespace wand::test

// In a test body (or any void function it calls): fail in one line when the path is absent.
#define WAND_REQUIRE_DATA(required_path)                                                                 \
  do {                                                                                          \
    const std::filesystem::path wand_required_ = (required_path);                                        \
    if (!std::filesystem::exists(wand_required_)) {                                             \
      GTEST_FAIL() << "test data missing: " << wand_required_.string()                          \
                   << " (golden set: tests/data/golden, or WAND_GOLDEN_DIR)";                   \
    }                                                                                           \
  } while (0)
