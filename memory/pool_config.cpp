#include "memory/pool_config.h"

#include <cctype>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace wand::memory {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw Error(ErrorCode::kConfig, "memory config: field '" + field + "': " + why);
}

const nlohmann::json* member(const nlohmann::json& obj, const char* key, const std::string& field) {
  if (!obj.is_object()) bad(field, "expected an object");
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::uint64_t parse_uint(const nlohmann::json& v, const std::string& field) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < 0) bad(field, "expected a non-negative integer");
  return v.get<std::uint64_t>();
}

}  // namespace

std::uint64_t parse_bytes(const nlohmann::json& value, const std::string& field) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer()) {
    if (value.get<std::int64_t>() < 0) bad(field, "size must not be negative");
    return value.get<std::uint64_t>();
  }
  if (value.is_number_float()) {
    double d = value.get<double>();
    if (d < 0 || d != std::floor(d)) bad(field, "size must be a whole number of bytes");
    return static_cast<std::uint64_t>(d);
  }
  if (!value.is_string()) bad(field, "expected a size (number of bytes or a string like \"24GiB\")");
  const std::string s = value.get<std::string>();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  const std::size_t num_start = i;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == num_start) bad(field, "size '" + s + "' does not start with a number");
  double num = 0;
  try {
    num = std::stod(s.substr(num_start, i - num_start));
  } catch (...) {
    bad(field, "size '" + s + "' has a malformed number");
  }
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  std::string unit = s.substr(i);
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back()))) unit.pop_back();
  std::string u;
  for (char c : unit) u += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (u.empty() || u == "b") mult = 1;
  else if (u == "kib" || u == "k") mult = 1024.0;
  else if (u == "mib" || u == "m") mult = 1024.0 * 1024;
  else if (u == "gib" || u == "g") mult = 1024.0 * 1024 * 1024;
  else if (u == "tib" || u == "t") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (u == "kb") mult = 1e3;
  else if (u == "mb") mult = 1e6;
  else if (u == "gb") mult = 1e9;
  else if (u == "tb") mult = 1e12;
  else bad(field, "size '" + s + "' has an unknown unit '" + unit + "'");
  const double bytes = num * mult;
  if (bytes >= 1.8e19) bad(field, "size '" + s + "' is too large");
  if (bytes != std::floor(bytes)) bad(field, "size '" + s + "' is not a whole number of bytes");
  return static_cast<std::uint64_t>(bytes);
}

PoolConfig PoolConfig::from_json(const nlohmann::json& j) {
  PoolConfig c;
  if (!j.is_object()) bad("memory", "expected an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "host" && it.key() != "disk" && it.key() != "devices" && it.key() != "io") {
      bad(it.key(), "unknown field (expected host, disk, devices, io)");
    }
  }
  const nlohmann::json* host = member(j, "host", "memory");
  if (!host) bad("host", "missing (the host tier is required)");
  const nlohmann::json* hb = member(*host, "bytes", "host");
  if (!hb) bad("host.bytes", "missing");
  c.host_bytes = parse_bytes(*hb, "host.bytes");
  if (c.host_bytes == 0) bad("host.bytes", "must be greater than zero");
  if (const auto* p = member(*host, "pinned", "host")) {
    if (!p->is_boolean()) bad("host.pinned", "expected true or false");
    c.host_pinned = p->get<bool>();
  }
  if (const auto* d = member(j, "disk", "memory")) {
    DiskConfig dc;
    const auto* dir = member(*d, "dir", "disk");
    if (!dir || !dir->is_string() || dir->get<std::string>().empty()) bad("disk.dir", "expected a directory path");
    dc.dir = dir->get<std::string>();
    const auto* db = member(*d, "bytes", "disk");
    if (!db) bad("disk.bytes", "missing");
    dc.bytes = parse_bytes(*db, "disk.bytes");
    c.disk = dc;
  }
  if (const auto* devs = member(j, "devices", "memory")) {
    if (!devs->is_array()) bad("devices", "expected an array");
    for (std::size_t i = 0; i < devs->size(); ++i) {
      const std::string f = "devices[" + std::to_string(i) + "]";
      const auto& d = (*devs)[i];
      DeviceConfig dc;
      const auto* idx = member(d, "index", f);
      if (!idx) bad(f + ".index", "missing");
      dc.index = static_cast<int>(parse_uint(*idx, f + ".index"));
      const auto* b = member(d, "bytes", f);
      if (!b) bad(f + ".bytes", "missing");
      dc.bytes = parse_bytes(*b, f + ".bytes");
      if (const auto* bu = member(d, "budget", f)) dc.budget_bytes = parse_bytes(*bu, f + ".budget");
      if (const auto* be = member(d, "backend", f)) {
        if (!be->is_string()) bad(f + ".backend", "expected \"auto\", \"cuda\" or \"cpu\"");
        dc.backend = be->get<std::string>();
        if (dc.backend != "auto" && dc.backend != "cuda" && dc.backend != "cpu") {
          bad(f + ".backend", "unknown backend '" + dc.backend + "' (expected auto, cuda or cpu)");
        }
      }
      for (const auto& other : c.devices) {
        if (other.index == dc.index) bad(f + ".index", "device " + std::to_string(dc.index) + " listed twice");
      }
      c.devices.push_back(dc);
    }
  }
  if (const auto* io = member(j, "io", "memory")) {
    if (const auto* e = member(*io, "engine", "io")) {
      if (!e->is_string()) bad("io.engine", "expected \"auto\", \"io_uring\" or \"psync\"");
      c.io.kind = e->get<std::string>();
      if (c.io.kind != "auto" && c.io.kind != "io_uring" && c.io.kind != "psync") {
        bad("io.engine", "unknown engine '" + c.io.kind + "' (expected auto, io_uring or psync)");
      }
    }
    if (const auto* q = member(*io, "queue_depth", "io")) {
      const auto v = parse_uint(*q, "io.queue_depth");
      if (v < 1 || v > 4096) bad("io.queue_depth", "must be between 1 and 4096");
      c.io.queue_depth = static_cast<unsigned>(v);
    }
    if (const auto* cb = member(*io, "chunk_bytes", "io")) {
      c.io.chunk_bytes = parse_bytes(*cb, "io.chunk_bytes");
      if (c.io.chunk_bytes < 4096 || c.io.chunk_bytes % 4096 != 0 || c.io.chunk_bytes > (1ull << 30)) {
        bad("io.chunk_bytes", "must be a multiple of 4 KiB between 4 KiB and 1 GiB");
      }
    }
    if (const auto* t = member(*io, "psync_threads", "io")) {
      const auto v = parse_uint(*t, "io.psync_threads");
      if (v < 1 || v > 256) bad("io.psync_threads", "must be between 1 and 256");
      c.io.psync_threads = static_cast<unsigned>(v);
    }
  }
  return c;
}

nlohmann::json PoolConfig::to_json() const {
  nlohmann::json j;
  j["host"] = {{"bytes", host_bytes}, {"pinned", host_pinned}};
  if (disk) j["disk"] = {{"dir", disk->dir}, {"bytes", disk->bytes}};
  j["devices"] = nlohmann::json::array();
  for (const auto& d : devices) {
    nlohmann::json e = {{"index", d.index}, {"bytes", d.bytes}, {"backend", d.backend}};
    if (d.budget_bytes > 0) e["budget"] = d.budget_bytes;
    j["devices"].push_back(e);
  }
  j["io"] = {{"engine", io.kind}, {"queue_depth", io.queue_depth}, {"chunk_bytes", io.chunk_bytes},
             {"psync_threads", io.psync_threads}};
  return j;
}

}  // namespace wand::memory
