// CRC-32 with the zip polynomial (0xEDB88320, reflected; the checksum zip and
// torch.save store per entry), computed slicing-by-8.
//
//   std::uint32_t c = crc32_update(0, head, n0);   // start from 0
//   c = crc32_update(c, rest, n1);                 // continue: same as one call over both
//
// Pure and thread-safe (the tables are built once, on first use).
#pragma once

#include <cstddef>
#include <cstdint>

namespace wand::model {

// CRC-32 (zip polynomial), continuing from `crc` (0 to start).
std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n);

}  // namespace wand::model
