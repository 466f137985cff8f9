// Base64 (RFC 4648, with padding) for bytes inside JSON messages: input images
// and fetched results.
//
//   std::string s = base64_encode(bytes.data(), bytes.size());
//   std::vector<std::uint8_t> b = base64_decode(s);  // throws Error(kBadRequest)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wand {

std::string base64_encode(const std::uint8_t* data, std::size_t size);
inline std::string base64_encode(const std::vector<std::uint8_t>& v) {
  return base64_encode(v.data(), v.size());
}
// Throws wand::Error(kBadRequest) on a character outside the alphabet or a bad length.
std::vector<std::uint8_t> base64_decode(std::string_view text);

}  // namespace wand
