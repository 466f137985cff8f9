#include "model/pth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "common/error.h"

namespace wand::model {

// Note [pth pickle subset]
// torch.save(state_dict) emits protocol-2 pickles (torch >= 2 may emit FRAME /
// MEMOIZE with higher protocols): PROTO, EMPTY_DICT / EMPTY_LIST / EMPTY_TUPLE,
// MARK, (SHORT_)BINUNICODE, BININT*, LONG1, BINFLOAT, NEWTRUE/NEWFALSE, NONE,
// GLOBAL / STACK_GLOBAL, the memo ops, TUPLE*, REDUCE, BUILD, SETITEM(S),
// APPEND(S), BINPERSID and STOP. Callables understood by REDUCE:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 (and
// _rebuild_parameter, which unwraps). Persistent ids are
// ('storage', <torch.XStorage | torch.UntypedStorage>, key, location, numel).
// Any other callable yields an opaque value; the state dict may hold such
// values (they are skipped), but a tensor may not be built from them.
// Nested dicts are flattened with '.' (e.g. {"model": {...}} -> "model.x").

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

// ---- zip directory ----------------------------------------------------------

struct ZipRecord {
  std::uint64_t data_offset = 0;  // absolute offset of the entry's bytes
  std::uint64_t size = 0;
  std::uint32_t crc = 0;
};

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

// ---- pickle machine ---------------------------------------------------------

struct PValue;
using PV = std::shared_ptr<PValue>;

struct PValue {
  enum class Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor, kDtype, kOpaque };
  Kind kind = Kind::kNone;
  std::int64_t i = 0;
  double f = 0;
  std::string s;                             // str / global "module.name" / storage key
  std::vector<PV> items;                     // tuple / list
  std::vector<std::pair<PV, PV>> dict;       // dict
  at::ScalarType dtype = at::kFloat;         // storage / dtype
  // tensor
  PV storage;
  std::int64_t storage_offset = 0;
  std::vector<int64_t> size, stride;
};

PV make(PValue::Kind k) {
  auto v = std::make_shared<PValue>();
  v->kind = k;
  return v;
}

bool storage_dtype(const std::string& name, at::ScalarType* t) {
  static const std::map<std::string, at::ScalarType> kMap = {
      {"torch.FloatStorage", at::kFloat},        {"torch.DoubleStorage", at::kDouble},
      {"torch.HalfStorage", at::kHalf},          {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.LongStorage", at::kLong},          {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},        {"torch.CharStorage", at::kChar},
      {"torch.ByteStorage", at::kByte},          {"torch.BoolStorage", at::kBool},
      {"torch.ComplexFloatStorage", at::kComplexFloat},
      {"torch.ComplexDoubleStorage", at::kComplexDouble},
      {"torch.UntypedStorage", at::kByte},       {"torch.storage.UntypedStorage", at::kByte},
      {"torch.float32", at::kFloat},             {"torch.float", at::kFloat},
      {"torch.float64", at::kDouble},            {"torch.double", at::kDouble},
      {"torch.float16", at::kHalf},              {"torch.half", at::kHalf},
      {"torch.bfloat16", at::kBFloat16},         {"torch.int64", at::kLong},
      {"torch.int32", at::kInt},                 {"torch.int16", at::kShort},
      {"torch.int8", at::kChar},                 {"torch.uint8", at::kByte},
      {"torch.bool", at::kBool},
  };
  auto it = kMap.find(name);
  if (it == kMap.end() && name.rfind("torch.cuda.", 0) == 0) it = kMap.find("torch." + name.substr(11));  // old GPU saves
  if (it == kMap.end()) return false;
  *t = it->second;
  return true;
}

class Unpickler {
 public:
  Unpickler(const std::string& data, std::string ctx) : d_(data), ctx_(std::move(ctx)) {}

  PV run() {
    for (;;) {
      const unsigned char op = byte();
      switch (op) {
        case 0x80: byte(); break;                   // PROTO
        case 0x95: bytes(8); break;                 // FRAME
        case '}': push(make(PValue::Kind::kDict)); break;   // EMPTY_DICT
        case ']': push(make(PValue::Kind::kList)); break;   // EMPTY_LIST
        case ')': push(make(PValue::Kind::kTuple)); break;  // EMPTY_TUPLE
        case '(': marks_.push_back(stack_.size()); break;   // MARK
        case 'N': push(make(PValue::Kind::kNone)); break;
        case 0x88: case 0x89: {                     // NEWTRUE / NEWFALSE
          PV v = make(PValue::Kind::kBool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'X': push_str(static_cast<std::size_t>(le_n(4))); break;   // BINUNICODE
        case 0x8c: push_str(static_cast<std::size_t>(byte())); break;   // SHORT_BINUNICODE
        case 0x8d: push_str(static_cast<std::size_t>(le_n(8))); break;  // BINUNICODE8
        case 'C': push_str(static_cast<std::size_t>(byte())); break;    // SHORT_BINBYTES
        case 'B': push_str(static_cast<std::size_t>(le_n(4))); break;   // BINBYTES
        case 'U': push_str(static_cast<std::size_t>(byte())); break;    // SHORT_BINSTRING
        case 'J': push_int(static_cast<std::int32_t>(le_n(4))); break;  // BININT
        case 'K': push_int(byte()); break;                              // BININT1
        case 'M': push_int(static_cast<std::int64_t>(le_n(2))); break;  // BININT2
        case 0x8a: {                                                    // LONG1
          const std::size_t n = byte();
          if (n > 8) fail("LONG1 of " + std::to_string(n) + " bytes does not fit int64");
          const std::string b = bytes(n);
          std::uint64_t v = 0;
          for (std::size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[k]);
          if (n > 0 && n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) v |= ~0ull << (8 * n);
          push_int(static_cast<std::int64_t>(v));
          break;
        }
        case 'G': {                                                     // BINFLOAT (big-endian)
          const std::string b = bytes(8);
          std::uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | static_cast<unsigned char>(b[k]);
          PV v = make(PValue::Kind::kFloat);
          std::memcpy(&v->f, &u, 8);
          push(v);
          break;
        }
        case 'c': {                                                     // GLOBAL
          const std::string mod = line(), name = line();
          push(global(mod, name));
          break;
        }
        case 0x93: {                                                    // STACK_GLOBAL
          PV name = pop(), mod = pop();
          if (name->kind != PValue::Kind::kStr || mod->kind != PValue::Kind::kStr) fail("STACK_GLOBAL needs strings");
          push(global(mod->s, name->s));
          break;
        }
        case 'q': memo_[byte()] = top(); break;                       // BINPUT
        case 'r': memo_[le_n(4)] = top(); break;                      // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;                // MEMOIZE
        case 'h': push(memo_get(byte())); break;                      // BINGET
        case 'j': push(memo_get(le_n(4))); break;                     // LONG_BINGET
        case 't': {                                                   // TUPLE
          PV v = make(PValue::Kind::kTuple);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                            // TUPLE1..3
          PV v = make(PValue::Kind::kTuple);
          v->items.resize(op - 0x84);
          for (std::size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
          push(v);
          break;
        }
        case 'l': {                                                   // LIST
          PV v = make(PValue::Kind::kList);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'd': {                                                   // DICT
          PV v = make(PValue::Kind::kDict);
          auto xs = pop_mark();
          if (xs.size() % 2) fail("DICT with an odd number of items");
          for (std::size_t k = 0; k < xs.size(); k += 2) v->dict.emplace_back(xs[k], xs[k + 1]);
          push(v);
          break;
        }
        case 'a': {                                                   // APPEND
          PV x = pop();
          PV l = top();
          if (l->kind != PValue::Kind::kList) fail("APPEND to a non-list");
          l->items.push_back(x);
          break;
        }
        case 'e': {                                                   // APPENDS
          auto xs = pop_mark();
          PV l = top();
          if (l->kind != PValue::Kind::kList) fail("APPENDS to a non-list");
          l->items.insert(l->items.end(), xs.begin(), xs.end());
          break;
        }
        case 's': {                                                   // SETITEM
          PV v = pop(), k = pop();
          PV dct = top();
          if (dct->kind != PValue::Kind::kDict) fail("SETITEM on a non-dict");
          dct->dict.emplace_back(k, v);
          break;
        }
        case 'u': {                                                   // SETITEMS
          auto xs = pop_mark();
          PV dct = top();
          if (dct->kind != PValue::Kind::kDict) fail("SETITEMS on a non-dict");
          if (xs.size() % 2) fail("SETITEMS with an odd number of items");
          for (std::size_t k = 0; k < xs.size(); k += 2) dct->dict.emplace_back(xs[k], xs[k + 1]);
          break;
        }
        case '0': pop(); break;                                       // POP
        case '1': pop_mark(); break;                                  // POP_MARK
        case '2': push(top()); break;                                 // DUP
        case 'Q': {                                                   // BINPERSID
          PV pid = pop();
          push(persistent(pid));
          break;
        }
        case 'R': {                                                   // REDUCE
          PV args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': pop(); break;   // BUILD: state (e.g. the state dict's _metadata) is dropped
        case '.': {               // STOP
          if (stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return stack_.back();
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex + " at byte " + std::to_string(pos_ - 1));
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& m) const {
    throw Error(ErrorCode::kModelFormat, ctx_ + ": data.pkl: " + m);
  }
  unsigned char byte() {
    if (pos_ >= d_.size()) fail("truncated pickle");
    return static_cast<unsigned char>(d_[pos_++]);
  }
  std::string bytes(std::size_t n) {
    if (n > d_.size() - pos_) fail("truncated pickle");
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::uint64_t le_n(int n) {
    const std::string b = bytes(static_cast<std::size_t>(n));
    return le(reinterpret_cast<const unsigned char*>(b.data()), n);
  }
  std::string line() {
    const std::size_t e = d_.find('\n', pos_);
    if (e == std::string::npos) fail("truncated GLOBAL");
    std::string s = d_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return s;
  }
  void push(PV v) { stack_.push_back(std::move(v)); }
  PV pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    PV v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PV top() {
    if (stack_.empty()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<PV> pop_mark() {
    if (marks_.empty()) fail("no MARK");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PV> xs(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return xs;
  }
  PV memo_get(std::uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail("memo key " + std::to_string(k) + " not set");
    return it->second;
  }
  void push_str(std::size_t n) {
    PV v = make(PValue::Kind::kStr);
    v->s = bytes(n);
    push(v);
  }
  void push_int(std::int64_t x) {
    PV v = make(PValue::Kind::kInt);
    v->i = x;
    push(v);
  }
  PV global(const std::string& mod, const std::string& name) {
    PV v = make(PValue::Kind::kGlobal);
    v->s = mod + "." + name;
    at::ScalarType t;
    if (name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0) {
      if (!storage_dtype(v->s, &t)) fail("unsupported storage type " + v->s);
    } else if (mod == "torch" && storage_dtype(v->s, &t)) {
      v->kind = PValue::Kind::kDtype;
      v->dtype = t;
    }
    return v;
  }
  PV persistent(const PV& pid) {
    if (pid->kind != PValue::Kind::kTuple || pid->items.size() < 5 ||
        pid->items[0]->kind != PValue::Kind::kStr || pid->items[0]->s != "storage") {
      fail("unsupported persistent id (expected ('storage', type, key, location, numel))");
    }
    const PV& type = pid->items[1];
    PV v = make(PValue::Kind::kStorage);
    at::ScalarType t;
    if ((type->kind == PValue::Kind::kGlobal || type->kind == PValue::Kind::kDtype) &&
        storage_dtype(type->s, &t)) {
      v->dtype = t;
    } else {
      fail("persistent id with unsupported storage type '" + type->s + "'");
    }
    if (pid->items[2]->kind != PValue::Kind::kStr) fail("storage key is not a string");
    v->s = pid->items[2]->s;
    if (pid->items[4]->kind != PValue::Kind::kInt) fail("storage numel is not an int");
    v->i = pid->items[4]->i;
    return v;
  }
  std::vector<int64_t> ints(const PV& t, const char* what) {
    if (t->kind != PValue::Kind::kTuple && t->kind != PValue::Kind::kList) fail(std::string(what) + " is not a tuple");
    std::vector<int64_t> out;
    for (auto& x : t->items) {
      if (x->kind != PValue::Kind::kInt) fail(std::string(what) + " holds a non-integer");
      out.push_back(x->i);
    }
    return out;
  }
  PV reduce(const PV& fn, const PV& args) {
    if (fn->kind != PValue::Kind::kGlobal) fail("REDUCE on a non-callable");
    if (args->kind != PValue::Kind::kTuple) fail("REDUCE arguments are not a tuple");
    if (fn->s == "collections.OrderedDict") return make(PValue::Kind::kDict);
    if (fn->s == "torch._utils._rebuild_tensor_v2" || fn->s == "torch._utils._rebuild_tensor") {
      if (args->items.size() < 4) fail("_rebuild_tensor_v2 with too few arguments");
      const PV& st = args->items[0];
      if (st->kind != PValue::Kind::kStorage) fail("_rebuild_tensor_v2 without a storage");
      if (args->items[1]->kind != PValue::Kind::kInt) fail("storage offset is not an int");
      PV v = make(PValue::Kind::kTensor);
      v->storage = st;
      v->dtype = st->dtype;
      v->storage_offset = args->items[1]->i;
      v->size = ints(args->items[2], "tensor size");
      v->stride = ints(args->items[3], "tensor stride");
      if (v->size.size() != v->stride.size()) fail("tensor size and stride ranks differ");
      return v;
    }
    if (fn->s == "torch.jit._pickle.restore_type_tag") {  // written by torch::pickle_save
      if (args->items.empty()) fail("restore_type_tag without a value");
      return args->items[0];
    }
    if (fn->s == "torch._utils._rebuild_parameter" || fn->s == "torch._utils._rebuild_parameter_with_state") {
      if (args->items.empty()) fail("_rebuild_parameter without data");
      return args->items[0];
    }
    PV v = make(PValue::Kind::kOpaque);
    v->s = fn->s;
    return v;
  }

  const std::string& d_;
  std::string ctx_;
  std::size_t pos_ = 0;
  std::vector<PV> stack_;
  std::vector<std::size_t> marks_;
  std::map<std::uint64_t, PV> memo_;
};

void flatten(const PV& dict, const std::string& prefix, std::vector<std::pair<std::string, PV>>* out) {
  for (auto& kv : dict->dict) {
    if (kv.first->kind != PValue::Kind::kStr) continue;
    const std::string name = prefix + kv.first->s;
    if (kv.second->kind == PValue::Kind::kTensor) {
      out->emplace_back(name, kv.second);
    } else if (kv.second->kind == PValue::Kind::kDict) {
      flatten(kv.second, name + ".", out);
    }
  }
}

}  // namespace

// ---- PthFile ------------------------------------------------------------------

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
  PV root = Unpickler(pkl, path_).run();
  if (root->kind != PValue::Kind::kDict) {
    throw Error(ErrorCode::kModelFormat, path_ + ": data.pkl is not a state dict (top-level value is not a dict)");
  }
  std::vector<std::pair<std::string, PV>> tensors;
  flatten(root, "", &tensors);
  for (auto& nt : tensors) {
    const std::string& name = nt.first;
    const PValue& t = *nt.second;
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

// ---- CRC-32 -------------------------------------------------------------------

namespace {
struct CrcTables {
  std::uint32_t t[8][256];
  CrcTables() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};
const CrcTables& crc_tables() {
  static const CrcTables tables;
  return tables;
}
}  // namespace

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
  const auto& T = crc_tables().t;
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  while (n >= 8) {  // slicing-by-8
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = T[7][lo & 0xFF] ^ T[6][(lo >> 8) & 0xFF] ^ T[5][(lo >> 16) & 0xFF] ^ T[4][lo >> 24] ^
        T[3][hi & 0xFF] ^ T[2][(hi >> 8) & 0xFF] ^ T[1][(hi >> 16) & 0xFF] ^ T[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = T[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return ~c;
}

// ---- PthWriter ----------------------------------------------------------------

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
