// Hello: the first message each way on a connection. The client sends its
// protocol version and capabilities; the daemon answers with its own, plus the
// identity it read with SO_PEERCRED (so `wanctl` can say who it is talking as).
// A version the daemon does not speak is answered with unsupported_version and
// the connection is closed.
//
//   {"type":"hello","version":1,"capabilities":["watch"],"agent":"wanctl 0.1.0"}
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wand::proto {

struct Hello {
  int version = 0;
  std::vector<std::string> capabilities;
  std::string agent;                 // "wanctl 0.1.0", "wand 0.1.0"
  std::optional<unsigned> uid;       // server reply only: the peer's uid
  std::optional<unsigned> gid;       // server reply only: the peer's gid
  std::optional<bool> admin;         // server reply only: peer is in the admin group
};

void to_json(nlohmann::json& j, const Hello& m);
void from_json(const nlohmann::json& j, Hello& m);  // throws Error(kBadRequest)

}  // namespace wand::proto
