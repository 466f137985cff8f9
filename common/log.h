// Named spdlog loggers, one per subsystem: mem, io, sched, model, rpc.
//
//   wand::log::get("mem")->info("evict block={} tier={} bytes={}", id, tier, bytes);
//
// Messages are short, lowercase, key=value with units. Levels come from config
// (set_level) or WAND_LOG_LEVEL; logs go to stderr (the journal under systemd).
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace wand::log {

std::shared_ptr<spdlog::logger> get(const std::string& name);
// "trace" | "debug" | "info" | "warn" | "error" | "off"; applies to all loggers.
void set_level(const std::string& level);  // also applies to loggers created later

}  // namespace wand::log
