// Test helpers: tiny DiT experts written by the model maker, a plain (CPU) memory pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "memory/memory_pool.h"
#include "memory/pool_config.h"
#include "model/make_model/make_model.h"
#include "model/wan_config.h"

namespace wand::test {

// tiny-t2v geometry with `layers` blocks (so a 2-3 block budget streams for real).
inline model::WanConfig tiny_config(std::int64_t layers = 6) {
  model::WanConfig cfg = model::WanConfig::from_preset("tiny-t2v");
  cfg.num_layers = layers;
  return cfg;
}

// One expert directory in the release layout; one shard (max_shard_bytes large) unless given.
inline std::filesystem::path write_expert(const std::filesystem::path& dir, at::ScalarType dtype, std::uint64_t seed,
                                          std::int64_t layers = 6, std::uint64_t max_shard_bytes = 1ull << 30) {
  model::make::write_dit_expert(dir, tiny_config(layers), dtype, seed, max_shard_bytes);
  return dir;
}

// A pool with mmap host memory and one CPU device tier of `device_bytes`.
inline memory::PoolConfig tiny_pool_config(std::uint64_t host_bytes, std::uint64_t device_bytes) {
  nlohmann::json j = {{"host", {{"bytes", host_bytes}, {"pinned", false}}},
                      {"devices", nlohmann::json::array({{{"index", 0}, {"bytes", device_bytes}, {"backend", "cpu"}}})},
                      {"io", {{"engine", "psync"}}}};
  return memory::PoolConfig::from_json(j);
}

}  // namespace wand::test
