#include "proto/framing.h"

#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "common/error.h"

namespace wand::proto {

std::string encode_frame(std::string_view body) {
  if (body.size() > 0xffffffffull) {
    throw Error(ErrorCode::kBadRequest, "frame body of " + std::to_string(body.size()) +
                                            " bytes does not fit a 32-bit length");
  }
  auto n = static_cast<std::uint32_t>(body.size());
  std::string out;
  out.reserve(kFrameHeaderBytes + body.size());
  out += static_cast<char>((n >> 24) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out.append(body.data(), body.size());
  return out;
}

std::uint32_t decode_frame_length(const unsigned char* h) {
  return (std::uint32_t{h[0]} << 24) | (std::uint32_t{h[1]} << 16) | (std::uint32_t{h[2]} << 8) |
         std::uint32_t{h[3]};
}

void write_frame(int fd, std::string_view body) {
  std::string wire = encode_frame(body);
  std::size_t off = 0;
  while (off < wire.size()) {
    ssize_t n = ::write(fd, wire.data() + off, wire.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, std::string("write frame: ") + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
}

namespace {
// Returns bytes read before EOF (== size unless EOF came first).
std::size_t read_full(int fd, char* buf, std::size_t size) {
  std::size_t off = 0;
  while (off < size) {
    ssize_t n = ::read(fd, buf + off, size - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, std::string("read frame: ") + std::strerror(errno));
    }
    if (n == 0) break;
    off += static_cast<std::size_t>(n);
  }
  return off;
}
}  // namespace

std::optional<std::string> read_frame(int fd, std::uint32_t max_bytes) {
  unsigned char header[kFrameHeaderBytes];
  std::size_t got = read_full(fd, reinterpret_cast<char*>(header), kFrameHeaderBytes);
  if (got == 0) return std::nullopt;
  if (got < kFrameHeaderBytes) {
    throw Error(ErrorCode::kIo, "truncated frame: connection closed inside the length header");
  }
  std::uint32_t len = decode_frame_length(header);
  if (len > max_bytes) {
    throw Error(ErrorCode::kBadRequest, "frame of " + std::to_string(len) +
                                            " bytes exceeds the maximum of " +
                                            std::to_string(max_bytes));
  }
  std::string body(len, '\0');
  if (read_full(fd, body.data(), len) < len) {
    throw Error(ErrorCode::kIo, "truncated frame: connection closed inside a " +
                                    std::to_string(len) + "-byte body");
  }
  return body;
}

}  // namespace wand::proto
