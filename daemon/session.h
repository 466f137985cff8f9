// Session: one client connection. Reads frames (4-byte big-endian length + JSON),
// enforces the maximum frame size before reading a body, requires Hello first,
// decodes requests (proto/), runs the handler, and queues the response frames.
// Watch sessions receive JobEvent frames from the Server until the job ends.
//
// Malformed input never takes the daemon down: a body that is not JSON gets
// bad_frame (the stream is still in sync, the session goes on); a length over the
// maximum gets frame_too_large and the connection is closed (the stream cannot be
// resynchronised); a peer that disconnects mid-frame is simply dropped.
//
// Lives in a shared_ptr held by its pending Asio operations. Every method runs on
// the daemon's io thread (single-threaded io_context: no strand needed).
#pragma once

#include <deque>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "daemon/access.h"
#include "proto/responses.h"

namespace wand::daemon {

class Server;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, boost::asio::local::stream_protocol::socket socket);
  void start();
  // Queues a response frame; close_after: close once it (and all before it) is written.
  void send(const proto::Response& r, bool close_after = false);
  void close();
  const Peer& peer() const { return peer_; }

 private:
  void read_header();
  void read_body(std::uint32_t len);
  void handle_frame();
  void handle_request(const nlohmann::json& j);
  void write_next();

  Server& server_;
  boost::asio::local::stream_protocol::socket socket_;
  Peer peer_;
  bool hello_done_ = false;
  bool closed_ = false;
  bool closing_ = false;        // close once the write queue drains
  bool shutdown_after_write_ = false;
  unsigned char header_[4];
  std::string body_;
  std::deque<std::string> out_;  // encoded frames; front is being written
};

}  // namespace wand::daemon
