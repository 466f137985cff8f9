#include "memory/pool_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace wand::memory {
namespace {

std::string config_error(const nlohmann::json& j) {
  try {
    PoolConfig::from_json(j);
  } catch (const wand::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConfig);
    return e.what();
  }
  return "no error";
}

TEST(PoolConfig, ParsesSizesWithUnits) {
  EXPECT_EQ(parse_bytes(4096, "f"), 4096u);
  EXPECT_EQ(parse_bytes("24GiB", "f"), 24ull << 30);
  EXPECT_EQ(parse_bytes("512 MiB", "f"), 512ull << 20);
  EXPECT_EQ(parse_bytes("1.5GiB", "f"), 3ull << 29);
  EXPECT_EQ(parse_bytes("2GB", "f"), 2000000000ull);
  EXPECT_EQ(parse_bytes("8k", "f"), 8192u);
  EXPECT_THROW(parse_bytes("12 parsecs", "f"), wand::Error);
  EXPECT_THROW(parse_bytes("GiB", "f"), wand::Error);
  EXPECT_THROW(parse_bytes(-1, "f"), wand::Error);
  EXPECT_THROW(parse_bytes("0.5", "f"), wand::Error);
}

TEST(PoolConfig, ParsesAFullConfig) {
  auto j = nlohmann::json::parse(R"({
    "host": {"bytes": "8GiB", "pinned": false},
    "disk": {"dir": "/var/spool/wand", "bytes": "100GiB"},
    "devices": [{"index": 0, "bytes": "70GiB"}, {"index": 1, "bytes": 1048576, "backend": "cpu"}],
    "io": {"engine": "psync", "queue_depth": 16, "chunk_bytes": "1MiB"}})");
  PoolConfig c = PoolConfig::from_json(j);
  EXPECT_EQ(c.host_bytes, 8ull << 30);
  EXPECT_FALSE(c.host_pinned);
  ASSERT_TRUE(c.disk);
  EXPECT_EQ(c.disk->dir, "/var/spool/wand");
  EXPECT_EQ(c.disk->bytes, 100ull << 30);
  ASSERT_EQ(c.devices.size(), 2u);
  EXPECT_EQ(c.devices[0].bytes, 70ull << 30);
  EXPECT_EQ(c.devices[0].backend, "auto");
  EXPECT_EQ(c.devices[1].index, 1);
  EXPECT_EQ(c.devices[1].backend, "cpu");
  EXPECT_EQ(c.io.kind, "psync");
  EXPECT_EQ(c.io.queue_depth, 16u);
  EXPECT_EQ(c.io.chunk_bytes, 1u << 20);
  // Round trip.
  PoolConfig c2 = PoolConfig::from_json(c.to_json());
  EXPECT_EQ(c2.to_json(), c.to_json());
}

TEST(PoolConfig, ErrorsNameTheField) {
  EXPECT_NE(config_error({{"disk", {{"dir", "/x"}, {"bytes", 1}}}}).find("'host'"), std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", "lots"}}}}).find("host.bytes"), std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 0}}}}).find("host.bytes"), std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}}, {"disk", {{"bytes", 1}}}}).find("disk.dir"), std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}}, {"devices", {{{"index", 0}}}}}).find("devices[0].bytes"),
            std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}},
                          {"devices", {{{"index", 0}, {"bytes", 1}}, {{"index", 0}, {"bytes", 1}}}}})
                .find("devices[1].index"),
            std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}}, {"devices", {{{"index", 0}, {"bytes", 1}, {"backend", "tpu"}}}}})
                .find("devices[0].backend"),
            std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}}, {"io", {{"engine", "aio"}}}}).find("io.engine"), std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}}, {"io", {{"chunk_bytes", 1000}}}}).find("io.chunk_bytes"),
            std::string::npos);
  EXPECT_NE(config_error({{"host", {{"bytes", 1}}}, {"hots", 1}}).find("'hots'"), std::string::npos);
}

}  // namespace
}  // namespace wand::memory
