// A small pickle machine for the data.pkl of a torch.save state dict: it runs
// the opcodes torch writes and builds the values, with tensors described (not
// loaded) by their storage key, dtype, offset, size and stride.
//
//   PickleRef root = unpickle(pkl_bytes, path);               // path names the file in errors
//   for (auto& [name, t] : state_dict_tensors(root)) { t->storage->s ... t->size ... }
//
// Throws wand::Error(kModelFormat) "<ctx>: data.pkl: ..." on an opcode or a
// callable outside Note [pth pickle subset], or on a malformed pickle. Pure:
// no I/O, safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

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

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  enum class Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor, kDtype, kOpaque };
  Kind kind = Kind::kNone;
  std::int64_t i = 0;                            // int / bool; storage: numel
  double f = 0;
  std::string s;                                 // str / global "module.name" / storage key
  std::vector<PickleRef> items;                  // tuple / list
  std::vector<std::pair<PickleRef, PickleRef>> dict;  // dict, in insertion order
  at::ScalarType dtype = at::kFloat;             // storage / dtype / tensor
  // tensor
  PickleRef storage;
  std::int64_t storage_offset = 0;               // in elements
  std::vector<int64_t> size, stride;
};

// Runs the pickle `data` to its STOP and returns the value left on the stack.
// `ctx` (the file) prefixes every error message.
PickleRef unpickle(const std::string& data, const std::string& ctx);

// The tensors of a state dict in pickle order, nested dicts flattened with '.';
// entries with non-string keys or non-tensor values are skipped.
std::vector<std::pair<std::string, PickleRef>> state_dict_tensors(const PickleRef& dict);

}  // namespace wand::model
