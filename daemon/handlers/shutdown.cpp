#include "daemon/handlers/context.h"
#include "proto/error_codes.h"

namespace wand::daemon {

proto::Response handle_shutdown(HandlerContext&, const Peer& peer, const proto::Shutdown&) {
  if (!peer.admin) {
    return error_reply(proto::errc::kPermissionDenied,
                       "shutdown needs root or the admin group (uid " + std::to_string(peer.uid) + ")");
  }
  return proto::ShutdownAck{};  // the session acts on it after the reply is written
}

}  // namespace wand::daemon
