// Framing: a 4-byte big-endian body length, then the JSON body (UTF-8). The
// receiver enforces a maximum body size before reading the body.
//
//   std::string wire = proto::encode_frame(R"({"type":"list"})");
//   // blocking fds (wanctl):
//   proto::write_frame(fd, body);
//   std::optional<std::string> body = proto::read_frame(fd, max_bytes);  // nullopt: clean EOF
//
// The daemon reads headers and bodies with Asio and uses decode_frame_length.
// Thread-safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wand::proto {

constexpr std::size_t kFrameHeaderBytes = 4;

// Header + body. Throws Error(kBadRequest) for a body over 4 GiB - 1.
std::string encode_frame(std::string_view body);
// Body length from a 4-byte header.
std::uint32_t decode_frame_length(const unsigned char* header);

// Writes one frame to a blocking fd (retries EINTR and short writes).
// Throws Error(kIo) naming errno on failure.
void write_frame(int fd, std::string_view body);
// Reads one frame from a blocking fd. Returns nullopt on EOF before any header
// byte; throws Error(kIo) on EOF inside a frame ("truncated frame") or a read
// error, Error(kBadRequest) when the length exceeds max_bytes.
std::optional<std::string> read_frame(int fd, std::uint32_t max_bytes);

}  // namespace wand::proto
