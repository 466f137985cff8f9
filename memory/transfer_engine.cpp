#include "memory/transfer_engine.h"

#include "common/error.h"

namespace wand::memory {

namespace {
std::uint64_t align_up(std::uint64_t v) { return (v + 4095) & ~std::uint64_t{4095}; }
}  // namespace

TransferEngine::TransferEngine(HostTier& host, DiskTier* disk, std::unique_ptr<IoEngine> io)
    : host_(host), disk_(disk), io_(std::move(io)) {}

TransferEngine::~TransferEngine() { io_.reset(); }

Completion TransferEngine::file_to_host(int fd, const std::string& path, bool direct, std::uint64_t file_offset,
                                        Extent dst, std::uint64_t head, std::uint64_t bytes, bool urgent) {
  IoRequest r;
  r.fd = fd;
  r.path = path;
  r.direct = direct;
  r.file_offset = file_offset;
  r.buf = host_.base() + dst.offset;
  r.bytes = dst.bytes;
  r.bytes_required = head + bytes;
  r.urgent = urgent;
  host_.transfer_started();
  Completion c = io_->submit(std::move(r));
  c.then([this, bytes](const std::exception_ptr& err) { host_.transfer_finished(err ? 0 : bytes, 0); });
  return c;
}

Completion TransferEngine::disk_to_host(Extent src, Extent dst, std::uint64_t bytes, bool urgent) {
  WAND_ASSERT(disk_, "disk_to_host without a disk tier");
  IoRequest r;
  r.fd = disk_->fd();
  r.path = disk_->path();
  r.direct = disk_->direct();
  r.file_offset = src.offset;
  r.buf = host_.base() + dst.offset;
  r.bytes = align_up(bytes == 0 ? 1 : bytes);
  r.bytes_required = bytes;
  r.urgent = urgent;
  host_.transfer_started();
  disk_->transfer_started();
  Completion c = io_->submit(std::move(r));
  c.then([this, bytes](const std::exception_ptr& err) {
    host_.transfer_finished(err ? 0 : bytes, 0);
    disk_->transfer_finished(0, err ? 0 : bytes);
  });
  return c;
}

Completion TransferEngine::host_to_disk(Extent src, Extent dst, std::uint64_t bytes) {
  WAND_ASSERT(disk_, "host_to_disk without a disk tier");
  IoRequest r;
  r.fd = disk_->fd();
  r.path = disk_->path();
  r.direct = disk_->direct();
  r.write = true;
  r.file_offset = dst.offset;
  r.buf = host_.base() + src.offset;
  r.bytes = align_up(bytes == 0 ? 1 : bytes);
  host_.transfer_started();
  disk_->transfer_started();
  Completion c = io_->submit(std::move(r));
  c.then([this, bytes](const std::exception_ptr& err) {
    host_.transfer_finished(0, err ? 0 : bytes);
    disk_->transfer_finished(err ? 0 : bytes, 0);
  });
  return c;
}

Completion TransferEngine::host_to_device(DeviceTier& dev, const std::byte* src, std::uint64_t dst_offset,
                                          std::uint64_t bytes) {
  host_.transfer_started();
  Completion c;
  try {
    c = dev.copy_in(src, dst_offset, bytes);
  } catch (...) {
    host_.transfer_finished(0, 0);
    throw;
  }
  c.then([this, bytes](const std::exception_ptr& err) { host_.transfer_finished(0, err ? 0 : bytes); });
  return c;
}

Completion TransferEngine::device_to_host(DeviceTier& dev, std::uint64_t src_offset, std::byte* dst,
                                          std::uint64_t bytes) {
  host_.transfer_started();
  Completion c;
  try {
    c = dev.copy_out(src_offset, dst, bytes);
  } catch (...) {
    host_.transfer_finished(0, 0);
    throw;
  }
  c.then([this, bytes](const std::exception_ptr& err) { host_.transfer_finished(err ? 0 : bytes, 0); });
  return c;
}

}  // namespace wand::memory
