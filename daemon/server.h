// Server: the Unix-socket front end. Binds the configured path (or takes the
// socket systemd passed, LISTEN_FDS), accepts connections into Sessions, and
// fans job events out to watching sessions.
//
//   Server server(io, ctx, options);
//   server.listen();                                  // throws Error(kConfig/kIo)
//   queue.subscribe(... post(io, [&]{ server.on_job_event(rec, kind); }) ...);
//   server.stop_accepting(); server.close_all();
//
// Socket hygiene: a leftover socket file is probed (connect) before it is
// removed; a live one means another daemon (error); a non-socket file is never
// removed. The socket is created with the configured mode (0660) and group.
//
// Every method runs on the io thread (listen before run()).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

#include "daemon/handlers/context.h"

namespace wand::daemon {

class Session;

struct ServerOptions {
  std::string socket_path;
  std::string socket_group;  // "" = leave the daemon's group
  unsigned socket_mode = 0660;
  std::uint32_t max_message_bytes = 8u << 20;
  int max_clients = 512;
};

class Server {
 public:
  Server(boost::asio::io_context& io, HandlerContext& ctx, ServerOptions options,
         std::function<void()> on_shutdown_request);
  ~Server();

  void listen();
  void stop_accepting();
  void close_all();
  void set_max_message_bytes(std::uint32_t n) { options_.max_message_bytes = n; }

  // io thread: a job changed (kind "state" or "step").
  void on_job_event(const sched::JobRecord& r, const std::string& kind);
  std::size_t session_count() const { return sessions_.size(); }
  bool socket_activated() const { return !owns_path_; }

  // For sessions.
  HandlerContext& context() { return ctx_; }
  std::uint32_t max_message_bytes() const { return options_.max_message_bytes; }
  void add_watcher(const std::string& job, const std::shared_ptr<Session>& s);
  void session_closed(Session* s);
  void request_shutdown() { on_shutdown_request_(); }
  nlohmann::json tiers_snapshot();

 private:
  void accept();
  void bind_path();

  boost::asio::io_context& io_;
  HandlerContext& ctx_;
  ServerOptions options_;
  std::function<void()> on_shutdown_request_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;  // re-arms accept after a failure
  bool owns_path_ = false;
  bool accepting_ = false;
  std::map<Session*, std::weak_ptr<Session>> sessions_;
  std::map<std::string, std::vector<std::weak_ptr<Session>>> watchers_;
};

}  // namespace wand::daemon
