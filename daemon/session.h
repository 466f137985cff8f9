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
// Note [Client limits] (issue 15): a client cannot hold the daemon's resources for
// free. The body buffer grows with the bytes that arrive (never allocated from the
// length prefix: 500 clients announcing 8 MiB each cost nothing); a connection that
// sends no hello within the hello timeout, or does not finish a frame it began within
// the frame timeout, or sits idle (no frame, nothing to send, no watch) past the idle
// timeout, is closed; requests are not read while more than pause_read_bytes of replies
// wait for the client (a client that does not read stops itself, not the daemon), and
// a client whose unread watch events pass max_queued_bytes, or that reads nothing for
// the write timeout while replies wait, is closed. JSON nesting is bounded (kMaxJsonDepth)
// before the parser runs. The limits are ServerOptions (the env var
// WAND_CLIENT_TIMEOUTS="hello=S,frame=S,idle=S,write=S" overrides the timeouts).
//
// Lives in a shared_ptr held by its pending Asio operations. Every method runs on
// the daemon's io thread (single-threaded io_context: no strand needed).
#pragma once

#include <array>
#include <chrono>
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
  void read_more();
  void consume(const char* p, std::size_t n);
  void handle_frame();
  void handle_request(const nlohmann::json& j);
  void write_next();
  void queue_frame(std::string frame, bool event = false);
  // Note [Client limits]: (re)arms the one deadline for the session's current state.
  void arm_deadline();
  void on_deadline(const std::string& why);
  // Best effort, non-blocking: one last error frame, then close.
  void refuse(const char* code, const std::string& message);

  Server& server_;
  boost::asio::local::stream_protocol::socket socket_;
  Peer peer_;
  bool hello_done_ = false;
  bool closed_ = false;
  bool closing_ = false;        // close once the write queue drains
  bool shutdown_after_write_ = false;
  bool watching_ = false;        // a watch is streaming events: not idle
  bool read_paused_ = false;     // Note [Client limits]: too many unread replies
  unsigned char header_[4];
  std::size_t header_got_ = 0;   // bytes of the current frame's header so far
  std::uint32_t body_len_ = 0;
  std::string body_;             // grows as the body arrives
  std::array<char, 16 << 10> chunk_;  // one read
  std::deque<std::string> out_;  // encoded frames; front is being written
  std::size_t out_bytes_ = 0;    // bytes in out_
  boost::asio::steady_timer deadline_;
  std::chrono::steady_clock::time_point connected_at_, frame_started_at_;
  std::uint64_t deadline_gen_ = 0;
};

}  // namespace wand::daemon
