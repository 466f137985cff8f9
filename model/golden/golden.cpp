#include "model/golden/golden.h"

#include <fstream>

#include "common/error.h"
#include "model/safetensors.h"

namespace wand::model::golden {

namespace fs = std::filesystem;

Case load_case(const fs::path& dir) {
  Case c;
  c.dir = dir;
  const fs::path spec_path = dir / "case.json";
  std::ifstream in(spec_path);
  if (!in) throw Error(ErrorCode::kNotFound, "no case.json in " + dir.string());
  try {
    c.spec = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kModelFormat, spec_path.string() + ": " + e.what());
  }
  const fs::path inputs = dir / "inputs.safetensors";
  if (fs::exists(inputs)) c.inputs = load_safetensors(inputs.string());
  return c;
}

std::vector<std::string> expected_outputs(const Case& c) {
  std::vector<std::string> names;
  if (!c.spec.contains("outputs")) return names;
  for (auto it = c.spec["outputs"].begin(); it != c.spec["outputs"].end(); ++it) {
    const std::string& n = it.key();
    const std::string suffix = "_f32run";
    if (n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      continue;
    }
    names.push_back(n);
  }
  return names;
}

Outputs run_case(const fs::path& dir) {
  Case c = load_case(dir);
  const std::string kind = c.spec.value("case", std::string());
  Outputs out;
  if (kind == "rope") {
    out = run_rope(c);
  } else if (kind == "dit_t2v" || kind == "dit_i2v" || kind == "dit_ti2v") {
    out = run_dit(c);
  } else if (kind == "sched_unipc" || kind == "sched_dpmpp") {
    out = run_scheduler(c);
  } else if (kind == "moe_boundary") {
    out = run_moe_boundary(c);
  } else if (kind == "t5") {
    out = run_t5(c);
  } else if (kind == "vae21" || kind == "vae22") {
    out = run_vae(c);
  } else {
    throw Error(ErrorCode::kNotFound, dir.string() + ": unknown golden case '" + kind + "'");
  }
  for (const auto& name : expected_outputs(c)) {
    if (!out.count(name)) {
      throw Error(ErrorCode::kInternal, "case " + kind + ": handler did not produce '" + name + "'");
    }
  }
  return out;
}

}  // namespace wand::model::golden
