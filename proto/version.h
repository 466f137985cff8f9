// Protocol version and capabilities, exchanged in Hello on connect.
//
//   proto::Hello h{proto::kProtocolVersion, proto::server_capabilities(), "wand 0.1"};
//
// Bump kProtocolVersion on any incompatible change of a message; add a capability
// string for an additive one (clients test capabilities, never versions of wand).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wand::proto {

constexpr int kProtocolVersion = 1;

// wand's release version ("0.1.0", the CMake project version): `wand --version`,
// `wanctl --version` and the agents in Hello.
const char* wand_version();

// Default largest frame body accepted on receive (configurable in the daemon).
constexpr std::uint32_t kDefaultMaxFrameBytes = 8u << 20;  // 8 MiB

// Largest raw payload of one FetchChunk (base64 grows it by 4/3, well inside a frame).
constexpr std::size_t kFetchChunkBytes = 1u << 20;  // 1 MiB

inline std::vector<std::string> server_capabilities() {
  return {"submit", "list", "status", "watch", "cancel", "tiers", "plan", "models", "shutdown",
          "fetch"};
}

}  // namespace wand::proto
