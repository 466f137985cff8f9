// DaemonConfig: wand's configuration, from a JSON file (comments allowed: // and
// /* */, and any key starting with "_" is ignored, e.g. "_comment"), overridden by
// command-line flags. Validated at start: every error names the file and field.
//
//   DaemonConfig c = load_config_file("/etc/wand/wand.json");   // throws Error(kConfig)
//   DaemonConfig d = parse_config(json, "<flags>");
//   nlohmann::json j = config_to_json(c);                        // effective config
//
// The "memory" section is memory::PoolConfig's (validated by PoolConfig::from_json)
// and passed through unchanged to the pool.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace wand::daemon {

struct DaemonConfig {
  std::string socket_path = "/run/wand/wand.sock";
  std::string socket_group;                 // "" = the daemon's own group
  unsigned socket_mode = 0660;
  std::string state_dir = "/var/lib/wand";
  std::string admin_group = "wand-admin";   // members see and cancel every job; "" = none
  std::uint32_t max_message_bytes = 8u << 20;
  int max_clients = 512;
  std::string log_level = "info";
  std::map<std::string, std::string> models;  // name -> model directory
  nlohmann::json memory;                      // memory::PoolConfig JSON (null: not configured)
};

DaemonConfig parse_config(const nlohmann::json& j, const std::string& source);
DaemonConfig load_config_file(const std::filesystem::path& file);
nlohmann::json config_to_json(const DaemonConfig& c);

}  // namespace wand::daemon
