#include "model/pth_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "model/crc32.h"

namespace wand::model {

namespace {
constexpr std::uint64_t kAlign = 64;
constexpr std::uint64_t k32 = 0xFFFFFFFFull;
constexpr std::size_t kBufBytes = 4u << 20;

void put(std::string* s, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

const char* storage_type_name(at::ScalarType t, const std::string& ctx) {
  switch (t) {
    case at::kFloat: return "FloatStorage";
    case at::kDouble: return "DoubleStorage";
    case at::kHalf: return "HalfStorage";
    case at::kBFloat16: return "BFloat16Storage";
    case at::kLong: return "LongStorage";
    case at::kInt: return "IntStorage";
    case at::kShort: return "ShortStorage";
    case at::kChar: return "CharStorage";
    case at::kByte: return "ByteStorage";
    case at::kBool: return "BoolStorage";
    default: throw Error(ErrorCode::kBadRequest, ctx + ": dtype not writable to .pth");
  }
}

// Small protocol-2 pickle writer.
struct PickleOut {
  std::string s;
  void op(char c) { s.push_back(c); }
  void str(const std::string& v) {
    op('X');  // BINUNICODE
    put(&s, v.size(), 4);
    s += v;
  }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      put(&s, static_cast<std::uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      op('M');
      put(&s, static_cast<std::uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      put(&s, static_cast<std::uint64_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(v))), 4);
    } else {
      op('\x8a');
      s.push_back(8);
      put(&s, static_cast<std::uint64_t>(v), 8);
    }
  }
  void global(const std::string& mod, const std::string& name) {
    op('c');
    s += mod + "\n" + name + "\n";
  }
  void int_tuple(const std::vector<int64_t>& v) {
    op('(');
    for (auto x : v) integer(x);
    op('t');
  }
};
}  // namespace

PthWriter::PthWriter(std::string path, std::string archive_name)
    : path_(std::move(path)), archive_(std::move(archive_name)) {
  if (archive_.empty()) {
    std::string base = path_.substr(path_.find_last_of('/') == std::string::npos ? 0 : path_.find_last_of('/') + 1);
    const auto dot = base.find_last_of('.');
    archive_ = dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
    if (archive_.empty()) archive_ = "archive";
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(ErrorCode::kIo, "create " + path_ + ": " + std::strerror(errno));
  buf_.reserve(kBufBytes);
}

PthWriter::~PthWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void PthWriter::declare(const std::string& name, at::ScalarType dtype, std::vector<int64_t> shape) {
  if (started_) throw Error(ErrorCode::kInternal, path_ + ": declare('" + name + "') after data was written");
  storage_type_name(dtype, path_ + ": tensor '" + name + "'");
  for (auto& d : decl_) {
    if (d.name == name) throw Error(ErrorCode::kBadRequest, path_ + ": tensor '" + name + "' declared twice");
  }
  TensorInfo ti;
  ti.name = name;
  ti.dtype = dtype;
  ti.shape = std::move(shape);
  for (auto d : ti.shape) {
    if (d < 0) throw Error(ErrorCode::kBadRequest, path_ + ": tensor '" + name + "' has a negative dimension");
  }
  ti.nbytes = static_cast<std::uint64_t>(ti.numel()) * c10::elementSize(dtype);
  ti.path = path_;
  decl_.push_back(std::move(ti));
}

void PthWriter::raw(const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  pos_ += n;
  while (n) {
    const std::size_t room = kBufBytes - buf_.size();
    const std::size_t k = std::min(room, n);
    buf_.insert(buf_.end(), p, p + k);
    p += k;
    n -= k;
    if (buf_.size() == kBufBytes) {
      std::size_t done = 0;
      while (done < buf_.size()) {
        ssize_t w = ::write(fd_, buf_.data() + done, buf_.size() - done);
        if (w < 0) {
          if (errno == EINTR) continue;
          throw Error(ErrorCode::kIo, "write " + path_ + ": " + std::strerror(errno));
        }
        done += static_cast<std::size_t>(w);
      }
      buf_.clear();
    }
  }
}

namespace {
void flush_all(int fd, std::vector<char>* buf, const std::string& path) {
  std::size_t done = 0;
  while (done < buf->size()) {
    ssize_t w = ::write(fd, buf->data() + done, buf->size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, "write " + path + ": " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(w);
  }
  buf->clear();
}
void pwrite_all(int fd, const void* data, std::size_t n, std::uint64_t off, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, "write " + path + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    off += static_cast<std::uint64_t>(w);
  }
}
}  // namespace

void PthWriter::begin_entry(const std::string& name, std::uint64_t size) {
  ZipEntry z;
  z.name = archive_ + "/" + name;
  z.header_offset = pos_;
  z.size = size;
  z.zip64_local = force_zip64_ || size >= k32;
  std::string h;
  put(&h, 0x04034b50, 4);
  put(&h, z.zip64_local ? 45 : 20, 2);  // version needed
  put(&h, 0x0800, 2);                   // flags: UTF-8 names
  put(&h, 0, 2);                        // STORED
  put(&h, 0, 2);                        // time
  put(&h, 0x21, 2);                     // date (1980-01-01)
  put(&h, 0, 4);                        // crc, patched in end_entry()
  put(&h, z.zip64_local ? k32 : size, 4);
  put(&h, z.zip64_local ? k32 : size, 4);
  put(&h, z.name.size(), 2);
  std::string extra;
  if (z.zip64_local) {
    put(&extra, 1, 2);
    put(&extra, 16, 2);
    put(&extra, size, 8);
    put(&extra, size, 8);
  }
  // Pad with an extra field ("FB", as torch does) so the data is 64-byte aligned.
  const std::uint64_t base = pos_ + 30 + z.name.size() + extra.size();
  std::uint64_t pad = (kAlign - (base + 4) % kAlign) % kAlign;
  put(&extra, 0x4246, 2);
  put(&extra, pad, 2);
  extra.append(pad, 'Z');
  put(&h, extra.size(), 2);
  h += z.name;
  h += extra;
  raw(h.data(), h.size());
  WAND_ASSERT(pos_ % kAlign == 0, "pth entry alignment");
  entries_.push_back(z);
  crc_ = 0;
  in_entry_ = true;
}

void PthWriter::entry_data(const void* data, std::uint64_t nbytes) {
  crc_ = crc32_update(crc_, data, nbytes);
  raw(data, nbytes);
}

void PthWriter::end_entry() {
  ZipEntry& z = entries_.back();
  z.crc = crc_;
  flush_all(fd_, &buf_, path_);
  std::string c;
  put(&c, crc_, 4);
  pwrite_all(fd_, c.data(), 4, z.header_offset + 14, path_);
  in_entry_ = false;
}

void PthWriter::small_entry(const std::string& name, const std::string& content) {
  begin_entry(name, content.size());
  entry_data(content.data(), content.size());
  end_entry();
}

void PthWriter::start() {
  started_ = true;
  PickleOut p;
  p.op('\x80');
  p.s.push_back(2);
  p.op('}');  // a plain dict, as the release/golden files have (LibTorch's reader maps OrderedDict to None)
  p.op('(');
  for (std::size_t i = 0; i < decl_.size(); ++i) {
    const TensorInfo& t = decl_[i];
    p.str(t.name);
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');
    p.str("storage");
    p.global("torch", storage_type_name(t.dtype, path_));
    p.str(std::to_string(i));
    p.str("cpu");
    p.integer(t.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);
    p.int_tuple(t.shape);
    std::vector<int64_t> stride(t.shape.size());
    std::int64_t s = 1;
    for (std::size_t d = t.shape.size(); d-- > 0;) {
      stride[d] = s;
      s *= t.shape[d];
    }
    p.int_tuple(stride);
    p.op('\x89');
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    p.op('t');
    p.op('R');
  }
  p.op('u');
  p.op('.');
  small_entry("data.pkl", p.s);
  small_entry(".format_version", "1");
  small_entry(".storage_alignment", "64");
  small_entry("byteorder", "little");
}

void PthWriter::write_bytes(const std::string& name, const void* data, std::uint64_t nbytes) {
  if (finished_) throw Error(ErrorCode::kInternal, path_ + ": write after finish()");
  if (!started_) start();
  if (next_ >= decl_.size()) throw Error(ErrorCode::kBadRequest, path_ + ": write('" + name + "') but every declared tensor was written");
  const TensorInfo& t = decl_[next_];
  if (t.name != name) {
    throw Error(ErrorCode::kBadRequest, path_ + ": write('" + name + "') but the next declared tensor is '" + t.name + "'");
  }
  if (!in_entry_) {
    begin_entry("data/" + std::to_string(next_), t.nbytes);
    written_in_current_ = 0;
  }
  if (written_in_current_ + nbytes > t.nbytes) {
    throw Error(ErrorCode::kBadRequest, path_ + ": tensor '" + name + "' gets more than its " + std::to_string(t.nbytes) + " bytes");
  }
  entry_data(data, nbytes);
  written_in_current_ += nbytes;
  if (written_in_current_ == t.nbytes) {
    end_entry();
    ++next_;
  }
}

void PthWriter::write(const std::string& name, const at::Tensor& t) {
  if (next_ < decl_.size() && decl_[next_].name == name) {
    const TensorInfo& d = decl_[next_];
    if (t.scalar_type() != d.dtype || t.sizes().vec() != d.shape) {
      throw Error(ErrorCode::kBadRequest, path_ + ": tensor '" + name + "' does not match its declared dtype/shape");
    }
  }
  at::Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
  write_bytes(name, c.data_ptr(), static_cast<std::uint64_t>(c.numel()) * c.element_size());
}

void PthWriter::finish() {
  if (finished_) return;
  if (!started_) start();
  // Zero-byte tensors never see write_bytes; emit them here if they are next.
  while (next_ < decl_.size() && decl_[next_].nbytes == 0) {
    begin_entry("data/" + std::to_string(next_), 0);
    end_entry();
    ++next_;
  }
  if (next_ != decl_.size() || in_entry_) {
    throw Error(ErrorCode::kBadRequest, path_ + ": finish() before tensor '" + decl_[next_].name + "' was written");
  }
  small_entry("version", "3\n");
  const std::uint64_t cd_offset = pos_;
  std::string cd;
  for (const ZipEntry& z : entries_) {
    std::string extra;
    const bool big_size = force_zip64_ || z.size >= k32;
    const bool big_off = force_zip64_ || z.header_offset >= k32;
    if (big_size || big_off) {
      put(&extra, 1, 2);
      put(&extra, (big_size ? 16 : 0) + (big_off ? 8 : 0), 2);
      if (big_size) {
        put(&extra, z.size, 8);
        put(&extra, z.size, 8);
      }
      if (big_off) put(&extra, z.header_offset, 8);
    }
    put(&cd, 0x02014b50, 4);
    put(&cd, (3 << 8) | 45, 2);  // made by: unix, 4.5
    put(&cd, (big_size || big_off) ? 45 : 20, 2);
    put(&cd, 0x0800, 2);
    put(&cd, 0, 2);
    put(&cd, 0, 2);
    put(&cd, 0x21, 2);
    put(&cd, z.crc, 4);
    put(&cd, big_size ? k32 : z.size, 4);
    put(&cd, big_size ? k32 : z.size, 4);
    put(&cd, z.name.size(), 2);
    put(&cd, extra.size(), 2);
    put(&cd, 0, 2);  // comment
    put(&cd, 0, 2);  // disk
    put(&cd, 0, 2);  // internal attributes
    put(&cd, 0644u << 16, 4);
    put(&cd, big_off ? k32 : z.header_offset, 4);
    cd += z.name;
    cd += extra;
  }
  raw(cd.data(), cd.size());
  const std::uint64_t cd_size = cd.size();
  const std::uint64_t n = entries_.size();
  const bool zip64 = force_zip64_ || n >= 0xFFFF || cd_offset >= k32 || cd_size >= k32;
  std::string tail;
  if (zip64) {
    const std::uint64_t rec = pos_;
    put(&tail, 0x06064b50, 4);
    put(&tail, 44, 8);
    put(&tail, 45, 2);
    put(&tail, 45, 2);
    put(&tail, 0, 4);
    put(&tail, 0, 4);
    put(&tail, n, 8);
    put(&tail, n, 8);
    put(&tail, cd_size, 8);
    put(&tail, cd_offset, 8);
    put(&tail, 0x07064b50, 4);
    put(&tail, 0, 4);
    put(&tail, rec, 8);
    put(&tail, 1, 4);
  }
  put(&tail, 0x06054b50, 4);
  put(&tail, 0, 2);
  put(&tail, 0, 2);
  put(&tail, zip64 ? 0xFFFF : n, 2);
  put(&tail, zip64 ? 0xFFFF : n, 2);
  put(&tail, zip64 ? k32 : cd_size, 4);
  put(&tail, zip64 ? k32 : cd_offset, 4);
  put(&tail, 0, 2);
  raw(tail.data(), tail.size());
  flush_all(fd_, &buf_, path_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw Error(ErrorCode::kIo, "close " + path_ + ": " + std::strerror(errno));
  }
  fd_ = -1;
  finished_ = true;
}

}  // namespace wand::model
