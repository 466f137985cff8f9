#include "model/unpickler.h"

#include <cstdio>
#include <cstring>
#include <map>

#include "common/error.h"

namespace wand::model {

namespace {

using PValue = PickleValue;
using PV = PickleRef;

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
  std::uint64_t le_n(int n) {  // an n-byte little-endian unsigned integer
    const std::string b = bytes(static_cast<std::size_t>(n));
    std::uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[k]);
    return v;
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

PickleRef unpickle(const std::string& data, const std::string& ctx) { return Unpickler(data, ctx).run(); }

std::vector<std::pair<std::string, PickleRef>> state_dict_tensors(const PickleRef& dict) {
  std::vector<std::pair<std::string, PickleRef>> out;
  flatten(dict, "", &out);
  return out;
}

}  // namespace wand::model
