#include "model/weight_storage.h"

#include "common/error.h"

namespace wand::model {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

WeightsDtype parse_weights_dtype(const std::string& s, const std::string& where) {
  if (s == "auto" || s.empty()) return WeightsDtype::kAuto;
  if (s == "fp8" || s == "fp8_e4m3fn") return WeightsDtype::kFp8;
  if (s == "run") return WeightsDtype::kRun;
  throw Error(ErrorCode::kConfig, where + ": '" + s +
                                      "' is not a weights dtype (auto: as the files store them, fp8: the large "
                                      "linear weights in fp8_e4m3fn, run: everything in the run dtype)");
}

const char* weights_dtype_name(WeightsDtype w) {
  switch (w) {
    case WeightsDtype::kAuto: return "auto";
    case WeightsDtype::kFp8: return "fp8";
    case WeightsDtype::kRun: return "run";
  }
  return "?";
}

const char* fp8_scaling_name(Fp8Scaling s) { return s == Fp8Scaling::kRow ? "row" : "tensor"; }

bool fp8_eligible(const std::string& key, std::size_t ndim) {
  return ndim == 2 && key.rfind("blocks.", 0) == 0 && ends_with(key, ".weight");
}

StoredAs block_tensor_storage(const std::string& key, std::size_t ndim, const std::string& file_dtype, WeightsDtype w) {
  if (w == WeightsDtype::kRun || !fp8_eligible(key, ndim)) return StoredAs::kRun;
  if (file_dtype == "F8_E4M3") return StoredAs::kFp8;
  return w == WeightsDtype::kFp8 ? StoredAs::kFp8 : StoredAs::kRun;
}

bool is_fp8_scale_key(const std::string& key) { return ends_with(key, ".scale_weight"); }

bool is_fp8_aux_key(const std::string& key) {
  return key == kFp8MarkerKey || ends_with(key, ".scale_weight") || ends_with(key, ".scale_input");
}

std::string fp8_scale_key_of(const std::string& weight_key) {
  if (!ends_with(weight_key, ".weight")) return "";
  return weight_key.substr(0, weight_key.size() - 7) + ".scale_weight";
}

std::string fp8_weight_key_of(const std::string& scale_key) {
  if (!ends_with(scale_key, ".scale_weight")) return "";
  return scale_key.substr(0, scale_key.size() - 13) + ".weight";
}

}  // namespace wand::model
