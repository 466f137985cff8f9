// wand-golden CASE_DIR --out OUT.safetensors
// Computes every output a golden case lists with the project's code and writes
// them under the same names. Never reads outputs.safetensors.
#include <cstdio>
#include <cstring>
#include <string>

#include "common/error.h"
#include "model/golden/golden.h"
#include "model/safetensors.h"

int main(int argc, char** argv) {
  std::string dir, out;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("usage: wand-golden CASE_DIR --out OUT.safetensors\n");
      return 0;
    } else if (dir.empty()) {
      dir = argv[i];
    } else {
      std::fprintf(stderr, "wand-golden: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (dir.empty() || out.empty()) {
    std::fprintf(stderr, "usage: wand-golden CASE_DIR --out OUT.safetensors\n");
    return 2;
  }
  try {
    auto outputs = wand::model::golden::run_case(dir);
    std::map<std::string, at::Tensor> contiguous;
    for (auto& [k, v] : outputs) contiguous.emplace(k, v.contiguous().cpu());
    wand::model::save_safetensors(out, contiguous);
    std::printf("wand-golden: wrote %zu outputs to %s\n", contiguous.size(), out.c_str());
    return 0;
  } catch (const wand::Error& e) {
    std::fprintf(stderr, "wand-golden: %s: %s\n", wand::error_code_name(e.code()), e.what());
    return e.code() == wand::ErrorCode::kNotFound ? 3 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wand-golden: %s\n", e.what());
    return 1;
  }
}
