// Client: wanctl's blocking connection to wand. Connects, exchanges Hello, then
// sends requests and reads response frames (proto/). Errors carry the wanctl exit
// code they map to (ctl/exit_codes.h).
//
//   ctl::Client c = ctl::Client::connect("/run/wand/wand.sock");  // throws ClientError(3)
//   proto::Response r = c.call(proto::GetStatus{"j-3"});
//   c.send(proto::Watch{"j-3"});
//   for (;;) { proto::Response ev = c.receive(); ... }
//
// One thread at a time.
#pragma once

#include <stdexcept>
#include <string>

#include "proto/hello.h"
#include "proto/requests.h"
#include "proto/responses.h"

namespace wand::ctl {

// Note [One code per cause]: every failure wanctl reports has one stable code, printed as
// {"type":"error","code":...,"message":...} with --json: the daemon's ErrorReply code
// unchanged (not_found, bad_request, ...; proto/error_codes.h), or one of wanctl's own
// (ctl/exit_codes.h: usage, not_running, no_access, connection_lost, protocol, io,
// interrupted). The message never repeats the code.
class ClientError : public std::runtime_error {
 public:
  ClientError(int exit_code, std::string code, const std::string& message)
      : std::runtime_error(message), exit_code_(exit_code), code_(std::move(code)) {}
  int exit_code() const { return exit_code_; }
  const std::string& code() const { return code_; }

 private:
  int exit_code_;
  std::string code_;
};

class Client {
 public:
  static Client connect(const std::string& socket_path);
  Client(Client&& o) noexcept;
  Client& operator=(Client&& o) noexcept;
  ~Client();

  const proto::Hello& server() const { return server_; }
  const std::string& path() const { return path_; }
  void send(const proto::Request& r);
  proto::Response receive();  // throws ClientError(3) when the daemon hangs up
  proto::Response call(const proto::Request& r) {
    send(r);
    return receive();
  }

 private:
  explicit Client(int fd) : fd_(fd) {}

  int fd_ = -1;
  std::string path_;
  proto::Hello server_;
};

}  // namespace wand::ctl
