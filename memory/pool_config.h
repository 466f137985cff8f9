// PoolConfig: the tiers and budgets of a MemoryPool, parsed from JSON. Sizes are numbers
// of bytes or strings with a unit ("24GiB", "512 MiB", "1.5GB", "4096").
//
//   {"host":    {"bytes": "24GiB", "pinned": true},
//    "disk":    {"dir": "/var/lib/wand/spool", "bytes": "200GiB"},
//    "devices": [{"index": 0, "bytes": "16GiB", "budget": "23GiB", "backend": "auto"}],
//    "io":      {"engine": "auto", "queue_depth": 32, "chunk_bytes": "4MiB"}}
//
//   PoolConfig cfg = PoolConfig::from_json(j);   // throws wand::Error(kConfig) naming the field
//
// "backend" is "auto" (CUDA when the pool is built with the CUDA factory and the GPU
// exists, else the CPU device tier), "cuda" or "cpu".
// A device's "bytes" is its device tier (the weight slots the DiT blocks stream through, one
// allocation at start); "budget" (optional) is the whole card's usable memory, of which the
// tier is a part (Note [Card budget], daemon/config.h). The pool itself allocates only the
// tier; the budget is for the planner and the streaming executor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "memory/io_engine.h"

namespace wand::memory {

struct DeviceConfig {
  int index = 0;
  std::uint64_t bytes = 0;          // the device tier (weight slots)
  std::string backend = "auto";
  std::uint64_t budget_bytes = 0;   // the whole card's usable memory; 0: not configured
};

struct DiskConfig {
  std::string dir;
  std::uint64_t bytes = 0;
};

struct PoolConfig {
  std::uint64_t host_bytes = 0;
  bool host_pinned = true;  // false: plain mmap (tests with many pools)
  std::optional<DiskConfig> disk;
  std::vector<DeviceConfig> devices;
  IoEngineOptions io;

  static PoolConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

// Parses a byte size (number or string with unit B, KiB, MiB, GiB, TiB, KB, MB, GB, TB,
// K, M, G, T). `field` names the config field in the error.
std::uint64_t parse_bytes(const nlohmann::json& value, const std::string& field);

}  // namespace wand::memory
