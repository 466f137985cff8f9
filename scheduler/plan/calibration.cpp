#include "scheduler/plan/calibration.h"

#include <fstream>

#include "common/error.h"

namespace wand::sched::plan {

using nlohmann::json;

namespace {

Figure fig(double v, const char* ref, bool measured = true) {
  Figure f;
  f.value = v;
  f.ref = ref;
  f.measured = measured;
  return f;
}

[[noreturn]] void bad(const std::string& where, const std::string& field, const std::string& why) {
  throw Error(ErrorCode::kConfig, where + ": calibration field '" + field + "': " + why);
}

double parse_number_or_bytes(const json& v, const std::string& where, const std::string& field, bool bytes) {
  if (v.is_number()) return v.get<double>();
  if (bytes && v.is_string()) {
    // "0.5GiB", "512MiB", "4096"
    const std::string s = v.get<std::string>();
    std::size_t used = 0;
    double x = 0;
    try {
      x = std::stod(s, &used);
    } catch (...) {
      bad(where, field, "'" + s + "' is not a size");
    }
    std::string unit = s.substr(used);
    while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
    double mul = 1;
    if (unit == "" || unit == "B") mul = 1;
    else if (unit == "KiB") mul = 1024.0;
    else if (unit == "MiB") mul = 1024.0 * 1024;
    else if (unit == "GiB") mul = 1024.0 * 1024 * 1024;
    else if (unit == "KB") mul = 1e3;
    else if (unit == "MB") mul = 1e6;
    else if (unit == "GB") mul = 1e9;
    else bad(where, field, "unknown unit '" + unit + "' (B, KiB, MiB, GiB, KB, MB, GB)");
    return x * mul;
  }
  bad(where, field, std::string("expected a number") + (bytes ? " or a size string" : "") + ", got " + v.type_name());
}

void apply(Figure& f, const json& v, const std::string& where, const std::string& field, bool bytes = false) {
  Figure out = f;
  out.source = "file " + where;
  out.measured = true;
  if (v.is_object()) {
    if (!v.contains("value")) bad(where, field, "object without 'value'");
    out.value = parse_number_or_bytes(v["value"], where, field, bytes);
    if (v.contains("source")) {
      if (!v["source"].is_string()) bad(where, field, "'source' must be a string");
      out.source = v["source"].get<std::string>();
    }
    if (v.contains("ref") && v["ref"].is_string()) out.ref = v["ref"].get<std::string>();
    if (v.contains("measured") && v["measured"].is_boolean()) out.measured = v["measured"].get<bool>();
  } else {
    out.value = parse_number_or_bytes(v, where, field, bytes);
    out.ref.clear();
  }
  if (!(out.value > 0)) bad(where, field, "must be > 0, got " + std::to_string(out.value));
  f = out;
}

void apply_rates(DeviceRates& r, const json& j, const std::string& where, const std::string& prefix) {
  if (j.contains("gemm_tflops")) apply(r.gemm_tflops, j["gemm_tflops"], where, prefix + "gemm_tflops");
  if (j.contains("attention_tflops")) apply(r.attention_tflops, j["attention_tflops"], where, prefix + "attention_tflops");
  if (j.contains("hbm_gbps")) apply(r.hbm_gbps, j["hbm_gbps"], where, prefix + "hbm_gbps");
  if (j.contains("pcie_gbps")) apply(r.pcie_gbps, j["pcie_gbps"], where, prefix + "pcie_gbps");
}

json rates_json(const DeviceRates& r) {
  return {{"gemm_tflops", r.gemm_tflops.to_json()},
          {"attention_tflops", r.attention_tflops.to_json()},
          {"hbm_gbps", r.hbm_gbps.to_json()},
          {"pcie_gbps", r.pcie_gbps.to_json()}};
}

}  // namespace

json Figure::to_json() const {
  json j = {{"value", value}, {"source", source}};
  if (!ref.empty()) j["ref"] = ref;
  if (!measured) j["measured"] = false;
  return j;
}

Calibration Calibration::defaults() {
  // Note [Calibration defaults] in calibration.h.
  Calibration c;
  c.device.gemm_tflops = fig(825, "bench/results/dit-block-h100.md: PyTorch profile, A14B block at 32,760 tokens, "
                                  "GEMMs 23.8 ms for 1.963e13 FLOP (H100)");
  c.device.attention_tflops = fig(580, "architecture.md: cuDNN SDPA from C++ on the H100, 602 TFLOP/s at 32,760 tokens "
                                       "and 559 at 75,600 (mean)");
  c.device.hbm_gbps = fig(1442, "fitted with elementwise_passes to the C++ block times with the fused kernels, "
                                "bench/results/gpu-session-h100x2-2026-11-25.md (68.0 ms @ 32,760, 276.6 ms @ 75,600 "
                                "tokens, H100; before them 40 passes fitted 79.1 / 305.1 ms)");
  c.device.pcie_gbps = fig(53.8, "bench/results/memory-h100.md: CudaTier copy_in of 670 MiB from pinned memory (H100)");
  c.elementwise_passes = fig(14, "modelling constant, fitted jointly with hbm_gbps (see hbm_gbps)");
  c.disk_gbps = fig(1.86, "bench/results/memory-h100.md: disk -> pinned host, 670 MiB blob, 16 MiB chunks (H100 machine)");
  c.host_mem_gbps = fig(100, "NOT MEASURED: placeholder; measure N cards copying from one pinned region at once", false);
  c.interconnect_gbps = fig(25, "NOT MEASURED: placeholder; measure the NCCL all-to-all per card", false);
  c.context_bytes = fig(0.5 * 1024 * 1024 * 1024, "CUDA context + LibTorch kernels, the ~0.5 GiB of Note [Device budget] "
                                                  "(scheduler/exec/exec_budget.h); bench/exec measures it per run");
  c.vae_decode_ns_per_pixel_frame = fig(94.2, "bench/results/vae-h100.md: VAE 2.1 fp32 decode tiled to 16 GiB, "
                                              "1280x720 x 81 frames in 7.03 s (H100); VAE 2.2 not measured");
  c.activation_cap_factor = fig(1.125, "margin of the allocator cap over the activation estimate (bench/exec), not measured",
                                false);
  return c;
}

Calibration Calibration::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(ErrorCode::kConfig, where + ": calibration is not a JSON object");
  Calibration c = defaults();
  static const char* kKnown[] = {"gemm_tflops", "attention_tflops", "hbm_gbps", "pcie_gbps", "elementwise_passes",
                                 "disk_gbps", "host_mem_gbps", "interconnect_gbps", "context_bytes",
                                 "vae_decode_ns_per_pixel_frame", "activation_cap_factor", "devices"};
  for (const auto& [k, v] : j.items()) {
    if (!k.empty() && k[0] == '_') continue;
    bool known = false;
    for (const char* n : kKnown) known = known || k == n;
    if (!known) bad(where, k, "unknown field");
  }
  apply_rates(c.device, j, where, "");
  if (j.contains("elementwise_passes")) apply(c.elementwise_passes, j["elementwise_passes"], where, "elementwise_passes");
  if (j.contains("disk_gbps")) apply(c.disk_gbps, j["disk_gbps"], where, "disk_gbps");
  if (j.contains("host_mem_gbps")) apply(c.host_mem_gbps, j["host_mem_gbps"], where, "host_mem_gbps");
  if (j.contains("interconnect_gbps")) apply(c.interconnect_gbps, j["interconnect_gbps"], where, "interconnect_gbps");
  if (j.contains("context_bytes")) apply(c.context_bytes, j["context_bytes"], where, "context_bytes", /*bytes=*/true);
  if (j.contains("vae_decode_ns_per_pixel_frame")) {
    apply(c.vae_decode_ns_per_pixel_frame, j["vae_decode_ns_per_pixel_frame"], where, "vae_decode_ns_per_pixel_frame");
  }
  if (j.contains("activation_cap_factor")) {
    apply(c.activation_cap_factor, j["activation_cap_factor"], where, "activation_cap_factor");
  }
  if (j.contains("devices")) {
    if (!j["devices"].is_array()) bad(where, "devices", "expected an array of {\"index\": n, rates...}");
    for (const auto& d : j["devices"]) {
      if (!d.is_object() || !d.contains("index") || !d["index"].is_number_integer()) {
        bad(where, "devices", "every entry needs an integer 'index'");
      }
      const int idx = d["index"].get<int>();
      DeviceRates r = c.device;
      apply_rates(r, d, where, "devices[" + std::to_string(idx) + "].");
      c.per_device[idx] = r;
    }
  }
  return c;
}

Calibration Calibration::from_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kConfig, file.string() + ": cannot open calibration file");
  json j;
  try {
    j = json::parse(in, nullptr, true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kConfig, file.string() + ": calibration is not valid JSON: " + e.what());
  }
  return from_json(j, file.string());
}

DeviceRates Calibration::rates_for(int device_index) const {
  auto it = per_device.find(device_index);
  return it == per_device.end() ? device : it->second;
}

json Calibration::to_json() const {
  json j = rates_json(device);
  j["elementwise_passes"] = elementwise_passes.to_json();
  j["disk_gbps"] = disk_gbps.to_json();
  j["host_mem_gbps"] = host_mem_gbps.to_json();
  j["interconnect_gbps"] = interconnect_gbps.to_json();
  j["context_bytes"] = context_bytes.to_json();
  j["vae_decode_ns_per_pixel_frame"] = vae_decode_ns_per_pixel_frame.to_json();
  j["activation_cap_factor"] = activation_cap_factor.to_json();
  if (!per_device.empty()) {
    json d = json::array();
    for (const auto& [idx, r] : per_device) {
      json e = rates_json(r);
      e["index"] = idx;
      d.push_back(e);
    }
    j["devices"] = d;
  }
  return j;
}

std::vector<std::string> Calibration::unmeasured() const {
  std::vector<std::string> out;
  auto check = [&](const Figure& f, const char* name) {
    if (!f.measured) out.push_back(name);
  };
  check(device.gemm_tflops, "gemm_tflops");
  check(device.attention_tflops, "attention_tflops");
  check(device.hbm_gbps, "hbm_gbps");
  check(device.pcie_gbps, "pcie_gbps");
  check(disk_gbps, "disk_gbps");
  check(host_mem_gbps, "host_mem_gbps");
  check(interconnect_gbps, "interconnect_gbps");
  check(activation_cap_factor, "activation_cap_factor");
  return out;
}

}  // namespace wand::sched::plan
