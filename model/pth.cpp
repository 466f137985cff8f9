#include "model/pth.h"

#include "common/error.h"
#include "model/unpickler.h"
#include "model/zip_reader.h"

namespace wand::model {

PthFile::PthFile(std::string path) : path_(std::move(path)) {
  const auto dir = read_zip_directory(path_);
  std::string pkl_name;
  for (auto& kv : dir) {
    const std::string& n = kv.first;
    const auto slash = n.find('/');
    if (slash != std::string::npos && n.compare(slash, std::string::npos, "/data.pkl") == 0) {
      pkl_name = n;
      archive_ = n.substr(0, slash);
      break;
    }
  }
  if (pkl_name.empty()) {
    throw Error(ErrorCode::kModelFormat, path_ + ": no <archive>/data.pkl entry (not a torch.save zip file)");
  }
  auto bo = dir.find(archive_ + "/byteorder");
  if (bo != dir.end()) {
    std::string order(bo->second.size, '\0');
    read_exact(path_, bo->second.data_offset, order.data(), order.size());
    if (order != "little") {
      throw Error(ErrorCode::kModelFormat, path_ + ": byteorder '" + order + "' is not supported");
    }
  }
  const ZipRecord& pk = dir.at(pkl_name);
  if (pk.size > (1ull << 30)) throw Error(ErrorCode::kModelFormat, path_ + ": data.pkl is implausibly large");
  std::string pkl(pk.size, '\0');
  read_exact(path_, pk.data_offset, pkl.data(), pk.size);
  if (crc32_update(0, pkl.data(), pkl.size()) != pk.crc) {
    throw Error(ErrorCode::kModelFormat, path_ + ": data.pkl fails its CRC-32 check (corrupt file)");
  }
  PickleRef root = unpickle(pkl, path_);
  if (root->kind != PickleValue::Kind::kDict) {
    throw Error(ErrorCode::kModelFormat, path_ + ": data.pkl is not a state dict (top-level value is not a dict)");
  }
  for (auto& nt : state_dict_tensors(root)) {
    const std::string& name = nt.first;
    const PickleValue& t = *nt.second;
    const std::string ctx = path_ + ": tensor '" + name + "'";
    auto rec = dir.find(archive_ + "/data/" + t.storage->s);
    if (rec == dir.end()) {
      throw Error(ErrorCode::kModelFormat, ctx + ": storage data/" + t.storage->s + " missing from the archive");
    }
    const std::uint64_t el = c10::elementSize(t.dtype);
    if (static_cast<std::uint64_t>(t.storage->i) * el != rec->second.size) {
      throw Error(ErrorCode::kModelFormat, ctx + ": storage data/" + t.storage->s + " holds " +
                                               std::to_string(rec->second.size) + " bytes, pickle says " +
                                               std::to_string(t.storage->i) + " elements of " +
                                               std::to_string(el));
    }
    Entry e;
    e.info.name = name;
    e.info.dtype = t.dtype;
    e.info.shape = t.size;
    e.info.path = path_;
    e.strides = t.stride;
    std::int64_t numel = 1, max_index = 0, expect = 1;
    bool contiguous = true;
    for (std::size_t d = t.size.size(); d-- > 0;) {
      if (t.size[d] < 0 || t.stride[d] < 0) throw Error(ErrorCode::kModelFormat, ctx + ": negative size or stride");
      numel *= t.size[d];
      if (t.size[d] != 1 && t.stride[d] != expect) contiguous = false;
      expect *= t.size[d];
      if (t.size[d] > 0) max_index += (t.size[d] - 1) * t.stride[d];
    }
    if (t.storage_offset < 0 ||
        (numel > 0 && static_cast<std::uint64_t>(t.storage_offset + max_index + 1) > static_cast<std::uint64_t>(t.storage->i))) {
      throw Error(ErrorCode::kModelFormat, ctx + ": view exceeds its storage of " + std::to_string(t.storage->i) +
                                               " elements");
    }
    e.contiguous = contiguous;
    e.storage_file_offset = rec->second.data_offset;
    e.storage_offset_elems = static_cast<std::uint64_t>(t.storage_offset);
    e.info.offset = rec->second.data_offset + static_cast<std::uint64_t>(t.storage_offset) * el;
    e.info.nbytes = static_cast<std::uint64_t>(numel) * el;
    if (index_.count(name)) throw Error(ErrorCode::kModelFormat, ctx + ": duplicate key");
    order_.push_back(name);
    index_.emplace(name, std::move(e));
  }
}

const PthFile::Entry& PthFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error(ErrorCode::kModelFormat, path_ + ": no tensor '" + name + "'");
  return it->second;
}

const TensorInfo& PthFile::info(const std::string& name) const { return entry(name).info; }
bool PthFile::is_contiguous(const std::string& name) const { return entry(name).contiguous; }
const std::vector<int64_t>& PthFile::strides(const std::string& name) const { return entry(name).strides; }

at::Tensor PthFile::load(const std::string& name, c10::optional<at::ScalarType> dtype) const {
  const Entry& e = entry(name);
  at::Tensor t;
  if (e.contiguous) {
    t = at::empty(e.info.shape, at::TensorOptions().dtype(e.info.dtype));
    if (e.info.nbytes) read_exact(path_, e.info.offset, t.data_ptr(), e.info.nbytes);
  } else {
    // Read the span the view touches, then gather it.
    std::int64_t span = 1;
    for (std::size_t d = 0; d < e.info.shape.size(); ++d) {
      if (e.info.shape[d] == 0) { span = 0; break; }
      span += (e.info.shape[d] - 1) * e.strides[d];
    }
    at::Tensor flat = at::empty({span}, at::TensorOptions().dtype(e.info.dtype));
    if (span) read_exact(path_, e.info.offset, flat.data_ptr(), static_cast<std::uint64_t>(span) * flat.element_size());
    t = flat.as_strided(e.info.shape, e.strides).contiguous();
  }
  if (dtype && *dtype != t.scalar_type()) t = t.to(*dtype);
  return t;
}

}  // namespace wand::model
