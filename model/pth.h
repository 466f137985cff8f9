// PyTorch .pth (torch.save zip archive) reader and streaming writer, for state
// dicts (the umT5 encoder and the VAEs of the release).
//
//   PthFile f("models_t5_umt5-xxl-enc-bf16.pth");
//   for (auto& n : f.names()) { const TensorInfo& ti = f.info(n); ... }
//   at::Tensor w = f.load("token_embedding.weight", at::kFloat);   // one pread, then convert
//
//   PthWriter w("Wan2.1_VAE.pth");                  // archive name "Wan2.1_VAE"
//   w.declare("encoder.conv1.weight", at::kFloat, {96, 3, 3, 3, 3});  ...  // every tensor first
//   w.write("encoder.conv1.weight", t);             // then the data, in declared order
//   w.finish();
//
// Format (torch >= 1.6): a zip of STORED (uncompressed) entries under one
// top-level folder <archive>/: data.pkl (a pickle of the state dict whose
// tensors are torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
// calls; each storage is a persistent id ('storage', <type>, key, location, numel)),
// data/<key> (the raw little-endian bytes of each storage, 64-byte aligned by
// torch), byteorder, version. The central directory is parsed here (ZIP64 for
// files over 4 GiB, e.g. the 11.4 GB umT5), and a small pickle machine runs
// data.pkl. See Note [pth pickle subset] in pth.cpp for the accepted opcodes.
//
// PthFile owns only its index (names -> TensorInfo); load() reads one tensor
// with pread, so reading never needs twice the model in memory. Const methods
// are safe to call from several threads. PthWriter is single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tensor_source.h"

namespace wand::model {

class PthFile : public TensorSource {
 public:
  // Parses the zip directory and data.pkl. Throws wand::Error(kModelFormat)
  // naming the file (and key) on truncated, compressed or unsupported content.
  explicit PthFile(std::string path);

  std::vector<std::string> names() const override { return order_; }  // pickle order
  bool contains(const std::string& name) const override { return index_.count(name) != 0; }
  // offset/nbytes describe the bytes of a contiguous tensor; for a strided one
  // (is_contiguous false) offset is the first element and load() gathers it.
  const TensorInfo& info(const std::string& name) const override;
  at::Tensor load(const std::string& name,
                  c10::optional<at::ScalarType> dtype = c10::nullopt) const override;
  std::string describe() const override { return path_; }

  bool is_contiguous(const std::string& name) const;
  const std::vector<int64_t>& strides(const std::string& name) const;
  // The top-level folder name inside the zip ("models_t5_umt5-xxl-enc-bf16").
  const std::string& archive_name() const { return archive_; }

 private:
  struct Entry {
    TensorInfo info;
    std::vector<int64_t> strides;
    bool contiguous = true;
    std::uint64_t storage_file_offset = 0;  // absolute offset of data/<key>
    std::uint64_t storage_offset_elems = 0;
  };
  const Entry& entry(const std::string& name) const;

  std::string path_;
  std::string archive_;
  std::vector<std::string> order_;
  std::unordered_map<std::string, Entry> index_;
};

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

// CRC-32 (zip polynomial), continuing from `crc` (0 to start).
std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n);

}  // namespace wand::model
