// PthWriter: streams a state dict into a torch.save-format .pth (a zip of
// STORED entries, see model/pth.h for the layout) without holding it.
//
//   PthWriter w("Wan2.1_VAE.pth");                  // archive name "Wan2.1_VAE"
//   w.declare("encoder.conv1.weight", at::kFloat, {96, 3, 3, 3, 3});  ...  // every tensor first
//   w.write("encoder.conv1.weight", t);             // then the data, in declared order
//   w.finish();
//
// Single-threaded. Owns the open file until finish() (or the destructor) closes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/tensor_source.h"

namespace wand::model {

// Streams a state dict into a torch.load-compatible .pth without holding it:
// declare every tensor, then write their data in declared order, then finish().
// Entries are STORED with correct CRC-32s, data 64-byte aligned, ZIP64 records
// are used when an entry or the archive needs them. data.pkl is a plain dict
// {name: _rebuild_tensor_v2(('storage', torch.XStorage, '<i>', 'cpu', numel), 0,
// size, stride, False, OrderedDict())} in declaration order, like the golden
// files torch 2.11 wrote (a top-level OrderedDict would read as None in
// LibTorch's torch::pickle_load; Python's torch.load reads either).
class PthWriter {
 public:
  // archive_name defaults to the file name without its extension (as torch.save).
  explicit PthWriter(std::string path, std::string archive_name = {});
  ~PthWriter();
  PthWriter(const PthWriter&) = delete;
  PthWriter& operator=(const PthWriter&) = delete;

  void declare(const std::string& name, at::ScalarType dtype, std::vector<int64_t> shape);
  // Writes the next declared tensor (name, dtype and shape must match; CPU).
  void write(const std::string& name, const at::Tensor& t);
  // Raw little-endian bytes of the next declared tensor, possibly in several calls.
  void write_bytes(const std::string& name, const void* data, std::uint64_t nbytes);
  // Writes the trailing records and the central directory; closes the file.
  void finish();

  // Tests: use ZIP64 records even for a small archive.
  void set_force_zip64(bool on) { force_zip64_ = on; }
  std::uint64_t bytes_written() const { return pos_; }

 private:
  struct ZipEntry {
    std::string name;  // full name inside the zip
    std::uint64_t header_offset = 0;
    std::uint64_t size = 0;
    std::uint32_t crc = 0;
    bool zip64_local = false;
  };
  void begin_entry(const std::string& name, std::uint64_t size);
  void entry_data(const void* data, std::uint64_t nbytes);
  void end_entry();
  void small_entry(const std::string& name, const std::string& content);
  void start();  // data.pkl and the small records, on the first write
  void raw(const void* data, std::size_t n);

  std::string path_;
  std::string archive_;
  std::vector<TensorInfo> decl_;
  std::vector<ZipEntry> entries_;
  std::size_t next_ = 0;
  std::uint64_t written_in_current_ = 0;
  std::uint64_t pos_ = 0;
  std::uint32_t crc_ = 0;  // running CRC of the open entry
  bool in_entry_ = false;
  bool started_ = false;
  bool finished_ = false;
  bool force_zip64_ = false;
  int fd_ = -1;
  std::vector<char> buf_;  // write buffer
};

}  // namespace wand::model
