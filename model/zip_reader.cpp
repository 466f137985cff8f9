#include "model/zip_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "model/tensor_source.h"

namespace wand::model {

namespace {

std::uint64_t file_size_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kIo, "stat " + path + ": " + std::strerror(errno));
  }
  return static_cast<std::uint64_t>(st.st_size);
}

std::uint64_t le(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::map<std::string, ZipRecord> read_zip_directory(const std::string& path) {
  const std::uint64_t size = file_size_of(path);
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kModelFormat, path + ": " + what);
  };
  if (size < 22) throw bad("too short for a zip archive (" + std::to_string(size) + " bytes)");
  // The end-of-central-directory record sits in the last 22 + 65535 bytes.
  const std::uint64_t tail_len = std::min<std::uint64_t>(size, 22 + 65535 + 20);
  std::vector<unsigned char> tail(tail_len);
  read_exact(path, size - tail_len, tail.data(), tail_len);
  std::int64_t eocd = -1;
  for (std::int64_t i = static_cast<std::int64_t>(tail_len) - 22; i >= 0; --i) {
    if (tail[i] == 'P' && tail[i + 1] == 'K' && tail[i + 2] == 5 && tail[i + 3] == 6) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad("no zip end-of-central-directory record (truncated or not a torch zip .pth)");
  const unsigned char* e = tail.data() + eocd;
  std::uint64_t n_entries = le(e + 10, 2);
  std::uint64_t cd_size = le(e + 12, 4);
  std::uint64_t cd_offset = le(e + 16, 4);
  const std::uint64_t eocd_abs = size - tail_len + static_cast<std::uint64_t>(eocd);
  if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFFull || cd_offset == 0xFFFFFFFFull) {
    // ZIP64: locator (20 bytes) right before the EOCD points at the zip64 EOCD record.
    if (eocd_abs < 20) throw bad("zip64 end-of-central-directory locator missing");
    unsigned char loc[20];
    read_exact(path, eocd_abs - 20, loc, 20);
    if (!(loc[0] == 'P' && loc[1] == 'K' && loc[2] == 6 && loc[3] == 7)) {
      throw bad("zip64 end-of-central-directory locator missing");
    }
    const std::uint64_t z64 = le(loc + 8, 8);
    if (z64 + 56 > size) throw bad("zip64 end-of-central-directory record out of range");
    unsigned char rec[56];
    read_exact(path, z64, rec, 56);
    if (!(rec[0] == 'P' && rec[1] == 'K' && rec[2] == 6 && rec[3] == 6)) {
      throw bad("bad zip64 end-of-central-directory record");
    }
    n_entries = le(rec + 32, 8);
    cd_size = le(rec + 40, 8);
    cd_offset = le(rec + 48, 8);
  }
  if (cd_offset + cd_size > size || cd_size > (1ull << 32)) {
    throw bad("central directory out of range (truncated?)");
  }
  std::vector<unsigned char> cd(cd_size);
  read_exact(path, cd_offset, cd.data(), cd_size);
  std::map<std::string, ZipRecord> out;
  std::uint64_t p = 0;
  for (std::uint64_t k = 0; k < n_entries; ++k) {
    if (p + 46 > cd_size) throw bad("central directory truncated");
    const unsigned char* h = cd.data() + p;
    if (!(h[0] == 'P' && h[1] == 'K' && h[2] == 1 && h[3] == 2)) throw bad("bad central directory entry");
    const std::uint32_t method = static_cast<std::uint32_t>(le(h + 10, 2));
    const std::uint32_t crc = static_cast<std::uint32_t>(le(h + 16, 4));
    std::uint64_t csize = le(h + 20, 4);
    std::uint64_t usize = le(h + 24, 4);
    const std::uint64_t name_len = le(h + 28, 2);
    const std::uint64_t extra_len = le(h + 30, 2);
    const std::uint64_t comment_len = le(h + 32, 2);
    std::uint64_t local = le(h + 42, 4);
    if (p + 46 + name_len + extra_len + comment_len > cd_size) throw bad("central directory truncated");
    std::string name(reinterpret_cast<const char*>(h + 46), name_len);
    // ZIP64 extended information: the fields that are 0xFFFFFFFF, in this order.
    const unsigned char* x = h + 46 + name_len;
    for (std::uint64_t q = 0; q + 4 <= extra_len;) {
      const std::uint64_t id = le(x + q, 2), len = le(x + q + 2, 2);
      if (q + 4 + len > extra_len) break;
      if (id == 1) {
        std::uint64_t r = q + 4;
        auto take = [&](std::uint64_t& field) {
          if (field != 0xFFFFFFFFull) return;
          if (r + 8 > q + 4 + len) throw bad("entry '" + name + "': short zip64 extra field");
          field = le(x + r, 8);
          r += 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      q += 4 + len;
    }
    if (method != 0) {
      throw bad("entry '" + name + "' is compressed (method " + std::to_string(method) +
                "); torch writes STORED entries, re-save the file with torch.save");
    }
    if (csize != usize) throw bad("entry '" + name + "': stored sizes disagree");
    if (local + 30 > size) throw bad("entry '" + name + "': local header out of range (truncated?)");
    unsigned char lh[30];
    read_exact(path, local, lh, 30);
    if (!(lh[0] == 'P' && lh[1] == 'K' && lh[2] == 3 && lh[3] == 4)) {
      throw bad("entry '" + name + "': bad local header");
    }
    ZipRecord r;
    r.data_offset = local + 30 + le(lh + 26, 2) + le(lh + 28, 2);
    r.size = usize;
    r.crc = crc;
    if (r.data_offset + r.size > size) {
      throw bad("entry '" + name + "' ends at byte " + std::to_string(r.data_offset + r.size) +
                " but the file has " + std::to_string(size) + " (truncated)");
    }
    out[name] = r;
    p += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

}  // namespace wand::model
