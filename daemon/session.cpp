#include "daemon/session.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/log.h"
#include "daemon/job_view.h"
#include "daemon/server.h"
#include "proto/error_codes.h"
#include "proto/framing.h"
#include "proto/hello.h"
#include "proto/requests.h"
#include "proto/version.h"
#include "scheduler/durable_file.h"

namespace wand::daemon {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

// Note [Client limits]: deeper JSON than any request needs is refused before parsing
// (a 3.9M-level frame took the parser 1.6 s on the io thread, stalling every client).
constexpr int kMaxJsonDepth = 32;

// The nesting depth of a JSON text (brackets outside strings), stopping past `limit`.
int json_depth(const std::string& s, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escape = false;
  for (char c : s) {
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > max_depth) max_depth = depth;
      if (max_depth > limit) return max_depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

Session::Session(Server& server, asio::local::stream_protocol::socket socket)
    : server_(server), socket_(std::move(socket)), deadline_(socket_.get_executor()) {}

void Session::start() {
  try {
    peer_ = server_.context().access.identify(socket_.native_handle());
  } catch (const Error& e) {
    log::get("rpc")->warn("peer identity failed error=\"{}\"", e.what());
    close();
    return;
  }
  if (!server_.admit(shared_from_this(), peer_.admin)) {
    const auto& o = server_.options();
    log::get("rpc")->warn("connection refused uid={} reason=too_many_clients max_clients={} admin_reserve={}",
                          peer_.uid, o.max_clients, o.admin_reserve);
    refuse(proto::errc::kTooManyClients,
           "too many clients (max_clients " + std::to_string(o.max_clients) + ", of which " +
               std::to_string(o.admin_reserve) + " are kept for admins); try again later");
    return;
  }
  log::get("rpc")->debug("connect uid={} gid={} pid={} admin={}", peer_.uid, peer_.gid, peer_.pid,
                         peer_.admin);
  connected_at_ = std::chrono::steady_clock::now();
  arm_deadline();
  read_more();
}

void Session::refuse(const char* code, const std::string& message) {
  const std::string frame = proto::encode_frame(proto::response_to_json(proto::ErrorReply{code, message}).dump());
  // Non-blocking and best effort: the peer may not read at all.
  (void)::send(socket_.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  closed_ = true;  // never registered, or about to be dropped: no session_closed needed for refusals
  boost::system::error_code ec;
  deadline_.cancel();
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
}

void Session::arm_deadline() {
  if (closed_) return;
  const ServerOptions& o = server_.options();
  using clock = std::chrono::steady_clock;
  clock::time_point at;
  std::string why;
  if (!out_.empty()) {
    at = clock::now() + o.write_timeout, why = "write";  // re-armed at each completed write
  } else if (!hello_done_) {
    at = connected_at_ + o.hello_timeout, why = "hello";  // from the connection, not the last byte
  } else if (header_got_ > 0) {
    at = frame_started_at_ + o.frame_timeout, why = "frame";
  } else if (!watching_) {
    at = clock::now() + o.idle_timeout, why = "idle";
  } else {
    ++deadline_gen_;  // watching: events come when the job moves
    deadline_.cancel();
    return;
  }
  const std::uint64_t gen = ++deadline_gen_;
  deadline_.expires_at(at);
  auto self = shared_from_this();
  deadline_.async_wait([self, gen, why](boost::system::error_code ec) {
    if (ec || self->closed_ || gen != self->deadline_gen_) return;
    self->on_deadline(why);
  });
}

void Session::on_deadline(const std::string& why) {
  const ServerOptions& o = server_.options();
  const auto ms = why == "hello" ? o.hello_timeout : why == "frame" ? o.frame_timeout
                  : why == "idle" ? o.idle_timeout : o.write_timeout;
  const std::string secs = std::to_string(ms.count() / 1000.0);
  std::string text = why == "hello"   ? "no hello within " + secs + " s"
                     : why == "frame" ? "a frame was not completed within " + secs + " s"
                     : why == "idle"  ? "idle for " + secs + " s"
                                      : "the client read none of its replies for " + secs + " s";
  log::get("rpc")->info("client timed out uid={} reason={} detail=\"{}\"", peer_.uid, why, text);
  const std::string frame =
      proto::encode_frame(proto::response_to_json(proto::ErrorReply{proto::errc::kTimeout, text}).dump());
  (void)::send(socket_.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  close();
}

void Session::read_more() {
  if (closed_ || closing_) return;
  if (out_bytes_ > server_.options().pause_read_bytes) {  // Note [Client limits]
    read_paused_ = true;
    arm_deadline();
    return;
  }
  read_paused_ = false;
  auto self = shared_from_this();
  socket_.async_read_some(asio::buffer(chunk_), [self](boost::system::error_code ec, std::size_t n) {
    if (ec) {
      self->close();  // EOF (possibly mid-frame) or a reset
      return;
    }
    self->consume(self->chunk_.data(), n);
    self->read_more();
  });
}

void Session::consume(const char* p, std::size_t n) {
  while (n > 0 && !closed_ && !closing_) {
    if (header_got_ < sizeof header_) {
      const bool first = header_got_ == 0;
      const std::size_t take = std::min(n, sizeof header_ - header_got_);
      std::memcpy(header_ + header_got_, p, take);
      header_got_ += take;
      p += take;
      n -= take;
      if (first) {  // a frame began: the frame deadline runs
        frame_started_at_ = std::chrono::steady_clock::now();
        arm_deadline();
      }
      if (header_got_ < sizeof header_) return;
      body_len_ = proto::decode_frame_length(header_);
      if (body_len_ > server_.max_message_bytes()) {
        log::get("rpc")->warn("frame too large uid={} bytes={} max={}", peer_.uid, body_len_,
                              server_.max_message_bytes());
        send(proto::ErrorReply{proto::errc::kFrameTooLarge, "frame of " + std::to_string(body_len_) +
                                                                " bytes exceeds the maximum of " +
                                                                std::to_string(server_.max_message_bytes())},
             /*close_after=*/true);
        return;
      }
      body_.clear();  // grows with the bytes that come (Note [Client limits])
    }
    const std::size_t take = std::min<std::size_t>(n, body_len_ - body_.size());
    body_.append(p, take);
    p += take;
    n -= take;
    if (body_.size() == body_len_) {
      header_got_ = 0;
      handle_frame();
      arm_deadline();
    }
  }
}

void Session::handle_frame() {
  if (json_depth(body_, kMaxJsonDepth) > kMaxJsonDepth) {
    body_.clear();
    body_.shrink_to_fit();
    send(proto::ErrorReply{proto::errc::kBadFrame,
                           "frame body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels"});
    return;
  }
  json j = json::parse(body_, nullptr, /*allow_exceptions=*/false);
  body_.clear();
  body_.shrink_to_fit();
  if (j.is_discarded() || !j.is_object()) {
    send(proto::ErrorReply{proto::errc::kBadFrame, "frame body is not a JSON object"});
    return;
  }
  if (!hello_done_) {
    if (j.value("type", json()) != "hello") {
      send(proto::ErrorReply{proto::errc::kHelloRequired, "the first message must be hello"}, true);
      return;
    }
    proto::Hello h;
    try {
      h = j.get<proto::Hello>();
    } catch (const Error& e) {
      send(proto::ErrorReply{proto::errc::kBadRequest, std::string("hello: ") + e.what()}, true);
      return;
    }
    if (h.version != proto::kProtocolVersion) {
      send(proto::ErrorReply{proto::errc::kUnsupportedVersion,
                             "protocol version " + std::to_string(h.version) +
                                 " is not supported (this wand speaks " +
                                 std::to_string(proto::kProtocolVersion) + ")"},
           true);
      return;
    }
    hello_done_ = true;
    proto::Hello reply{proto::kProtocolVersion, proto::server_capabilities(), "wand 0.1.0",
                       peer_.uid, peer_.gid, peer_.admin};
    json rj = reply;
    queue_frame(proto::encode_frame(rj.dump()));
    return;
  }
  try {
    handle_request(j);
  } catch (const sched::DiskFullError& e) {
    // Note [Disk full]: the change was not made (nothing journaled); reads go on.
    // Note [Server paths]: the log has the whole message (the file that could not be
    // written); a user is told the cause, an admin also where.
    log::get("rpc")->error("request failed uid={} error=\"{}\"", peer_.uid, e.what());
    const std::string what = "nothing was changed; try again once the daemon has disk space again";
    send(proto::ErrorReply{proto::errc::kDiskFull, peer_.admin ? disk_full_text(e.what(), what) + " (" + e.what() + ")"
                                                               : disk_full_text(e.what(), what)});
  } catch (const Error& e) {
    log::get("rpc")->error("request failed uid={} error=\"{}\"", peer_.uid, e.what());
    send(proto::ErrorReply{proto::errc::kInternal, user_message(peer_, server_.context().server_paths, e.what())});
  } catch (const std::exception& e) {
    log::get("rpc")->error("request failed uid={} error=\"{}\"", peer_.uid, e.what());
    send(proto::ErrorReply{proto::errc::kInternal, user_message(peer_, server_.context().server_paths, e.what())});
  }
}

void Session::handle_request(const json& j) {
  proto::Request req;
  try {
    req = proto::request_from_json(j);
  } catch (const Error& e) {
    send(proto::ErrorReply{proto::errc::kBadRequest, e.what()});
    return;
  }
  HandlerContext& ctx = server_.context();
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, proto::Submit>) {
          send(handle_submit(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::ListJobs>) {
          send(handle_list(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::GetStatus>) {
          send(handle_status(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::Cancel>) {
          send(handle_cancel(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::GetTiers>) {
          send(handle_tiers(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::GetPlan>) {
          send(handle_plan(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::ListModels>) {
          send(handle_models(ctx, peer_, m));
        } else if constexpr (std::is_same_v<T, proto::Fetch>) {
          for (const auto& r : handle_fetch(ctx, peer_, m)) send(r);
        } else if constexpr (std::is_same_v<T, proto::Shutdown>) {
          proto::Response r = handle_shutdown(ctx, peer_, m);
          bool ok = std::holds_alternative<proto::ShutdownAck>(r);
          if (ok) {
            log::get("rpc")->info("shutdown requested uid={}", peer_.uid);
            shutdown_after_write_ = true;
          }
          send(r);
        } else if constexpr (std::is_same_v<T, proto::Watch>) {
          auto v = visible_job(ctx, peer_, m.job);
          if (auto* e = std::get_if<proto::ErrorReply>(&v)) {
            send(*e);
            return;
          }
          const auto& rec = std::get<sched::JobRecord>(v);
          send(event_for(peer_, ctx.server_paths, proto::JobEvent{"state", to_job_info(rec), server_.tiers_snapshot()}));
          if (!sched::is_terminal(rec.phase)) {
            server_.add_watcher(rec.id, shared_from_this());
            watching_ = true;
          }
        }
      },
      req);
}

void Session::send(const proto::Response& r, bool close_after) {
  if (closed_ || closing_) return;
  if (close_after) closing_ = true;
  // Replies are bounded by the requests read (reading pauses, read_more); only events
  // come unasked, so only they can pile up without end.
  queue_frame(proto::encode_frame(proto::response_to_json(r).dump()), std::holds_alternative<proto::JobEvent>(r));
}

void Session::queue_frame(std::string frame, bool event) {
  if (closed_) return;
  if (event && out_bytes_ + frame.size() > server_.options().max_queued_bytes) {
    // Note [Client limits]: events for a client that reads nothing pile up; drop it.
    log::get("rpc")->warn("client dropped uid={} reason=unread_replies bytes={} max={}", peer_.uid,
                          out_bytes_ + frame.size(), server_.options().max_queued_bytes);
    close();
    return;
  }
  out_bytes_ += frame.size();
  out_.push_back(std::move(frame));
  if (out_.size() == 1) write_next();
}

void Session::write_next() {
  if (out_.empty() || closed_) return;
  auto self = shared_from_this();
  arm_deadline();
  asio::async_write(socket_, asio::buffer(out_.front()),
                    [self](boost::system::error_code ec, std::size_t) {
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->out_bytes_ -= self->out_.front().size();
                      self->out_.pop_front();
                      if (!self->out_.empty()) {
                        self->write_next();
                        return;
                      }
                      if (self->shutdown_after_write_) {
                        self->shutdown_after_write_ = false;
                        self->server_.request_shutdown();
                      }
                      if (self->closing_) {
                        self->close();
                        return;
                      }
                      self->arm_deadline();
                      if (self->read_paused_) self->read_more();
                    });
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  ++deadline_gen_;
  deadline_.cancel();
  boost::system::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
  server_.session_closed(this);
}

}  // namespace wand::daemon
