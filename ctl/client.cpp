#include "ctl/client.h"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "ctl/exit_codes.h"
#include "proto/error_codes.h"
#include "proto/framing.h"
#include "proto/version.h"

namespace wand::ctl {

using nlohmann::json;

int exit_code_for_error(const std::string& code) {
  namespace e = proto::errc;
  if (code == e::kNotFound || code == e::kPermissionDenied) return kExitNotFound;
  if (code == e::kBadRequest || code == e::kUnknownModel || code == e::kInvalidState ||
      code == e::kBadFrame || code == e::kFrameTooLarge) {
    return kExitUsage;
  }
  if (code == e::kUnsupportedVersion || code == e::kShuttingDown || code == e::kHelloRequired) {
    return kExitNoDaemon;
  }
  return kExitJobFailed;
}

Client Client::connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    throw ClientError(kExitUsage, kErrUsage, "socket path too long: " + path);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ClientError(kExitNoDaemon, kErrNotRunning, std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    if (e == ENOENT) {
      throw ClientError(kExitNoDaemon, kErrNotRunning, "wand is not running: no socket at " + path +
                                           " (start it with `systemctl start wand` or `wand`, "
                                           "or pass --socket)");
    }
    if (e == ECONNREFUSED) {
      throw ClientError(kExitNoDaemon, kErrNotRunning, "wand is not running: nothing listens on " + path);
    }
    if (e == EACCES || e == EPERM) {
      throw ClientError(kExitNoDaemon, kErrNoAccess, "permission denied on " + path +
                                           ": your user needs to be in the socket's group "
                                           "(see docs/operations.md)");
    }
    throw ClientError(kExitNoDaemon, kErrNotRunning, "cannot connect to " + path + ": " + std::strerror(e));
  }
  Client c(fd);
  c.path_ = path;
  // Hello must come back quickly; a socket nobody serves (a daemon that died under
  // socket activation) would otherwise hang wanctl forever.
  timeval hello_timeout{15, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &hello_timeout, sizeof hello_timeout);
  proto::Hello h{proto::kProtocolVersion, {"watch", "fetch"}, std::string("wanctl ") + proto::wand_version()};
  json hj = h;
  try {
    proto::write_frame(fd, hj.dump());
    auto body = proto::read_frame(fd, 64u << 20);
    if (!body) throw ClientError(kExitNoDaemon, kErrConnectionLost, "wand closed the connection during hello");
    json r = json::parse(*body);
    if (r.value("type", "") == "error") {
      throw ClientError(exit_code_for_error(r.value("code", "")), r.value("code", std::string(kErrProtocol)),
                        "wand refused the connection: " + r.value("message", std::string()));
    }
    c.server_ = r.get<proto::Hello>();
    timeval none{0, 0};  // watch may wait hours for a queued job: no timeout from here on
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  } catch (const Error& e) {
    if (std::string(e.what()).find("Resource temporarily unavailable") != std::string::npos) {
      throw ClientError(kExitNoDaemon, kErrNotRunning, "wand did not answer on " + path + " within 15 s");
    }
    throw ClientError(kExitNoDaemon, kErrProtocol, std::string("hello with wand failed: ") + e.what());
  } catch (const json::exception& e) {
    throw ClientError(kExitNoDaemon, kErrProtocol, std::string("hello with wand failed: ") + e.what());
  }
  return c;
}

Client::Client(Client&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), server_(std::move(o.server_)) {
  o.fd_ = -1;
}

Client& Client::operator=(Client&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
    path_ = std::move(o.path_);
    server_ = std::move(o.server_);
  }
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

void Client::send(const proto::Request& r) {
  try {
    proto::write_frame(fd_, proto::request_to_json(r).dump());
  } catch (const Error& e) {
    throw ClientError(kExitNoDaemon, kErrConnectionLost, std::string("sending to wand failed: ") + e.what());
  }
}

proto::Response Client::receive() {
  try {
    auto body = proto::read_frame(fd_, 64u << 20);
    if (!body) throw ClientError(kExitNoDaemon, kErrConnectionLost, "wand closed the connection");
    return proto::response_from_json(json::parse(*body));
  } catch (const Error& e) {
    throw ClientError(kExitNoDaemon, kErrConnectionLost, std::string("reading from wand failed: ") + e.what());
  } catch (const json::exception& e) {
    throw ClientError(kExitNoDaemon, kErrProtocol, std::string("wand sent a malformed message: ") + e.what());
  }
}

}  // namespace wand::ctl
