#include "daemon/session.h"

#include "common/error.h"
#include "common/log.h"
#include "daemon/job_view.h"
#include "daemon/server.h"
#include "proto/error_codes.h"
#include "proto/framing.h"
#include "proto/hello.h"
#include "proto/requests.h"
#include "proto/version.h"

namespace wand::daemon {

namespace asio = boost::asio;
using nlohmann::json;

Session::Session(Server& server, asio::local::stream_protocol::socket socket)
    : server_(server), socket_(std::move(socket)) {}

void Session::start() {
  try {
    peer_ = server_.context().access.identify(socket_.native_handle());
  } catch (const Error& e) {
    log::get("rpc")->warn("peer identity failed error=\"{}\"", e.what());
    close();
    return;
  }
  log::get("rpc")->debug("connect uid={} gid={} pid={} admin={}", peer_.uid, peer_.gid, peer_.pid,
                         peer_.admin);
  read_header();
}

void Session::read_header() {
  auto self = shared_from_this();
  asio::async_read(socket_, asio::buffer(header_, sizeof header_),
                   [self](boost::system::error_code ec, std::size_t) {
                     if (ec) {
                       self->close();  // EOF (possibly inside the header) or a reset
                       return;
                     }
                     std::uint32_t len = proto::decode_frame_length(self->header_);
                     if (len > self->server_.max_message_bytes()) {
                       log::get("rpc")->warn("frame too large uid={} bytes={} max={}",
                                             self->peer_.uid, len,
                                             self->server_.max_message_bytes());
                       self->send(proto::ErrorReply{proto::errc::kFrameTooLarge,
                                                    "frame of " + std::to_string(len) +
                                                        " bytes exceeds the maximum of " +
                                                        std::to_string(self->server_.max_message_bytes())},
                                  /*close_after=*/true);
                       return;
                     }
                     self->read_body(len);
                   });
}

void Session::read_body(std::uint32_t len) {
  body_.assign(len, '\0');
  auto self = shared_from_this();
  asio::async_read(socket_, asio::buffer(body_.data(), body_.size()),
                   [self](boost::system::error_code ec, std::size_t) {
                     if (ec) {
                       self->close();  // disconnected mid-frame
                       return;
                     }
                     self->handle_frame();
                     if (!self->closed_ && !self->closing_) self->read_header();
                   });
}

void Session::handle_frame() {
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
    out_.push_back(proto::encode_frame(rj.dump()));
    if (out_.size() == 1) write_next();
    return;
  }
  try {
    handle_request(j);
  } catch (const Error& e) {
    log::get("rpc")->error("request failed uid={} error=\"{}\"", peer_.uid, e.what());
    send(proto::ErrorReply{proto::errc::kInternal, e.what()});
  } catch (const std::exception& e) {
    log::get("rpc")->error("request failed uid={} error=\"{}\"", peer_.uid, e.what());
    send(proto::ErrorReply{proto::errc::kInternal, e.what()});
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
          send(proto::JobEvent{"state", to_job_info(rec), server_.tiers_snapshot()});
          if (!sched::is_terminal(rec.phase)) server_.add_watcher(rec.id, shared_from_this());
        }
      },
      req);
}

void Session::send(const proto::Response& r, bool close_after) {
  if (closed_ || closing_) return;
  out_.push_back(proto::encode_frame(proto::response_to_json(r).dump()));
  if (close_after) closing_ = true;
  if (out_.size() == 1) write_next();
}

void Session::write_next() {
  if (out_.empty() || closed_) return;
  auto self = shared_from_this();
  asio::async_write(socket_, asio::buffer(out_.front()),
                    [self](boost::system::error_code ec, std::size_t) {
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->out_.pop_front();
                      if (!self->out_.empty()) {
                        self->write_next();
                        return;
                      }
                      if (self->shutdown_after_write_) {
                        self->shutdown_after_write_ = false;
                        self->server_.request_shutdown();
                      }
                      if (self->closing_) self->close();
                    });
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_both, ec);
  socket_.close(ec);
  server_.session_closed(this);
}

}  // namespace wand::daemon
