// The central directory of a zip archive of STORED entries (what torch.save
// writes), ZIP64 included: where each entry's bytes are, how many, and their
// CRC-32. Reads only the end records, the directory and the local headers;
// the entries' data is left to the caller (one pread each).
//
//   auto dir = read_zip_directory("Wan2.1_VAE.pth");
//   const ZipRecord& r = dir.at("Wan2.1_VAE/data.pkl");
//   read_exact(path, r.data_offset, buf, r.size);
//
// Throws wand::Error(kModelFormat) naming the file (and entry) on a truncated
// archive, a compressed entry or a bad record; kIo when the file cannot be read.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace wand::model {

struct ZipRecord {
  std::uint64_t data_offset = 0;  // absolute offset of the entry's bytes
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
};

// Every entry of the archive at `path`, by its full name inside the zip.
std::map<std::string, ZipRecord> read_zip_directory(const std::string& path);

}  // namespace wand::model
