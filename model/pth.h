// PyTorch .pth (torch.save zip archive) reader and streaming writer, for state
// dicts (the umT5 encoder and the VAEs of the release): PthFile here, PthWriter
// in model/pth_writer.h (included). The parts are files of their own:
// model/zip_reader.h (the zip directory), model/unpickler.h (data.pkl),
// model/crc32.h (the entries' checksum).
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
// torch), byteorder, version. The central directory is read by zip_reader (ZIP64 for
// files over 4 GiB, e.g. the 11.4 GB umT5), and a small pickle machine runs
// data.pkl. See Note [pth pickle subset] (model/unpickler.h) for the accepted opcodes.
//
// PthFile owns only its index (names -> TensorInfo); load() reads one tensor
// with pread, so reading never needs twice the model in memory. Const methods
// are safe to call from several threads. PthWriter is single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/crc32.h"       // crc32_update, part of this API
#include "model/pth_writer.h"  // PthWriter, part of this API
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

}  // namespace wand::model
