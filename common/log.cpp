#include "common/log.h"

#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace wand::log {

namespace {
std::mutex mu;
// The level of every logger, existing and future: WAND_LOG_LEVEL, then set_level.
spdlog::level::level_enum& level() {  // guarded by mu
  static spdlog::level::level_enum l = [] {
    const char* env = std::getenv("WAND_LOG_LEVEL");
    return env ? spdlog::level::from_str(env) : spdlog::level::info;
  }();
  return l;
}
}  // namespace

std::shared_ptr<spdlog::logger> get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_level(level());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %^%l%$ %v");
  return logger;
}

void set_level(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu);
  level() = spdlog::level::from_str(name);
  spdlog::set_level(level());  // existing loggers; later ones read level()
}

}  // namespace wand::log
