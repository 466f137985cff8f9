#include "common/log.h"

#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace wand::log {

namespace {
std::mutex mu;
bool level_set = false;                                   // guarded by mu
spdlog::level::level_enum level = spdlog::level::info;   // guarded by mu
spdlog::level::level_enum default_level() {
  if (level_set) return level;
  const char* env = std::getenv("WAND_LOG_LEVEL");
  return env ? spdlog::level::from_str(env) : spdlog::level::info;
}
}  // namespace

std::shared_ptr<spdlog::logger> get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_level(default_level());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %^%l%$ %v");
  return logger;
}

void set_level(const std::string& level_name) {
  std::lock_guard<std::mutex> lock(mu);
  ::wand::log::level = spdlog::level::from_str(level_name);
  level_set = true;
  spdlog::set_level(::wand::log::level);  // existing loggers; later ones read `level`
}

}  // namespace wand::log
