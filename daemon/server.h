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

#include <chrono>
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
  // Note [Client limits] (session.h): the last admin_reserve of max_clients are kept
  // for members of the admin group, so a user holding every connection cannot lock
  // an admin out.
  int admin_reserve = 8;
  std::chrono::milliseconds hello_timeout{10000};
  std::chrono::milliseconds frame_timeout{30000};
  std::chrono::milliseconds idle_timeout{300000};
  std::chrono::milliseconds write_timeout{60000};
  std::size_t pause_read_bytes = 1u << 20;   // stop reading requests above this much unread output
  std::size_t max_queued_bytes = 64u << 20;  // close the client above this much (events pile up)
};

// ServerOptions with the timeouts WAND_CLIENT_TIMEOUTS names replaced
// ("hello=10,frame=30,idle=300,write=60", seconds, any subset); throws Error(kConfig).
void apply_timeout_env(ServerOptions& o);

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
  // Note [Client limits]: registers a session whose peer is known; false when full
  // (for this peer: non-admins leave admin_reserve free).
  bool admit(const std::shared_ptr<Session>& s, bool admin);
  const ServerOptions& options() const { return options_; }
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
