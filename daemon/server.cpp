#include "daemon/server.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "daemon/job_view.h"
#include "daemon/notifier.h"
#include "daemon/session.h"
#include "proto/error_codes.h"

namespace wand::daemon {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

Server::Server(asio::io_context& io, HandlerContext& ctx, ServerOptions options,
               std::function<void()> on_shutdown_request)
    : io_(io),
      ctx_(ctx),
      options_(std::move(options)),
      on_shutdown_request_(std::move(on_shutdown_request)),
      acceptor_(io),
      retry_timer_(io) {}

Server::~Server() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (owns_path_) ::unlink(options_.socket_path.c_str());
}

namespace {

// True when something accepts connections at path.
bool socket_is_live(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

}  // namespace

void Server::bind_path() {
  const std::string& path = options_.socket_path;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw Error(ErrorCode::kConfig, "socket.path " + path + " exists and is not a socket; not removing it");
    }
    if (socket_is_live(path)) {
      throw Error(ErrorCode::kConfig, "socket.path " + path + ": another wand is already listening there");
    }
    log::get("rpc")->info("stale socket removed path={}", path);
    ::unlink(path.c_str());
  }
  std::error_code fec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), fec);
  gid_t gid = static_cast<gid_t>(-1);
  if (!options_.socket_group.empty()) {
    struct group* g = ::getgrnam(options_.socket_group.c_str());
    if (!g) throw Error(ErrorCode::kConfig, "socket.group: unknown group '" + options_.socket_group + "'");
    gid = g->gr_gid;
  }
  acceptor_.open(stream());
  mode_t old = ::umask(0177);  // never world-accessible, even for an instant
  boost::system::error_code ec;
  acceptor_.bind(stream::endpoint(path), ec);
  ::umask(old);
  if (ec) throw Error(ErrorCode::kIo, "bind " + path + ": " + ec.message());
  owns_path_ = true;
  if (gid != static_cast<gid_t>(-1) && ::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0) {
    throw Error(ErrorCode::kIo, "chown " + path + " to group " + options_.socket_group + ": " + std::strerror(errno));
  }
  if (::chmod(path.c_str(), options_.socket_mode) != 0) {
    throw Error(ErrorCode::kIo, "chmod " + path + ": " + std::strerror(errno));
  }
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw Error(ErrorCode::kIo, "listen " + path + ": " + ec.message());
}

void Server::listen() {
  int fd = Notifier::listen_fd();
  if (fd >= 0) {
    acceptor_.assign(stream(), fd);
    owns_path_ = false;
    log::get("rpc")->info("listening fd={} (socket activation)", fd);
  } else {
    bind_path();
    log::get("rpc")->info("listening path={} mode=0{:o} group={}", options_.socket_path,
                          options_.socket_mode,
                          options_.socket_group.empty() ? "(daemon's)" : options_.socket_group);
  }
  accepting_ = true;
  accept();
}

void Server::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, stream::socket socket) {
    if (!accepting_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // e.g. EMFILE: back off instead of spinning on a failing accept.
      log::get("rpc")->warn("accept failed error=\"{}\" retry_ms=100", ec.message());
      retry_timer_.expires_after(std::chrono::milliseconds(100));
      retry_timer_.async_wait([this](boost::system::error_code tec) {
        if (!tec && accepting_) accept();
      });
      return;
    } else {
      auto s = std::make_shared<Session>(*this, std::move(socket));
      s->start();  // identifies the peer, then admit()s itself or refuses the connection
    }
    accept();
  });
}

void Server::stop_accepting() {
  accepting_ = false;
  retry_timer_.cancel();
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void Server::close_all() {
  auto copy = sessions_;
  for (auto& [_, w] : copy) {
    if (auto s = w.lock()) s->close();
  }
  sessions_.clear();
  watchers_.clear();
}

void Server::session_closed(Session* s) { sessions_.erase(s); }

bool Server::admit(const std::shared_ptr<Session>& s, bool admin) {
  const int reserve = std::min(options_.admin_reserve, std::max(0, options_.max_clients - 1));
  const int limit = admin ? options_.max_clients : options_.max_clients - reserve;
  if (static_cast<int>(sessions_.size()) >= limit) return false;
  sessions_[s.get()] = s;
  return true;
}

void apply_timeout_env(ServerOptions& o) {
  const char* env = std::getenv("WAND_CLIENT_TIMEOUTS");
  if (!env || !*env) return;
  std::string spec = env;
  std::size_t pos = 0;
  while (pos < spec.size()) {
    std::size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    const std::string item = spec.substr(pos, comma - pos);
    pos = comma + 1;
    const std::size_t eq = item.find('=');
    double sec = -1;
    try {
      if (eq != std::string::npos) sec = std::stod(item.substr(eq + 1));
    } catch (const std::exception&) {
    }
    const std::string key = eq == std::string::npos ? item : item.substr(0, eq);
    if (sec <= 0) throw Error(ErrorCode::kConfig, "WAND_CLIENT_TIMEOUTS: '" + item + "' is not name=seconds (> 0)");
    const auto ms = std::chrono::milliseconds(static_cast<long long>(sec * 1000));
    if (key == "hello") o.hello_timeout = ms;
    else if (key == "frame") o.frame_timeout = ms;
    else if (key == "idle") o.idle_timeout = ms;
    else if (key == "write") o.write_timeout = ms;
    else throw Error(ErrorCode::kConfig, "WAND_CLIENT_TIMEOUTS: unknown timeout '" + key + "' (hello, frame, idle, write)");
  }
}

void Server::add_watcher(const std::string& job, const std::shared_ptr<Session>& s) {
  watchers_[job].push_back(s);
}

nlohmann::json Server::tiers_snapshot() {
  try {
    proto::TiersReport t = ctx_.resources.tiers();
    return {{"measured", t.measured}, {"source", t.source}, {"tiers", t.tiers}};
  } catch (const std::exception&) {
    return nullptr;
  }
}

void Server::on_job_event(const sched::JobRecord& r, const std::string& kind) {
  auto it = watchers_.find(r.id);
  if (it == watchers_.end()) return;
  proto::JobEvent ev{kind, to_job_info(r), tiers_snapshot()};
  std::vector<std::weak_ptr<Session>> alive;
  for (auto& w : it->second) {
    if (auto s = w.lock()) {
      if (s->peer().admin) {
        s->send(ev);
      } else {
        s->send(event_for(s->peer(), ctx_.server_paths, ev));  // Note [Server paths]
      }
      alive.push_back(w);
    }
  }
  if (sched::is_terminal(r.phase) || alive.empty()) {
    watchers_.erase(it);
  } else {
    it->second = std::move(alive);
  }
}

}  // namespace wand::daemon
