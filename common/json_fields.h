// Typed field access for message decoding: every failure is an Error(kBadRequest)
// that names the field and the expected type.
//
//   int steps = field<int>(j, "steps");                     // required
//   auto neg = optional_field<std::string>(j, "negative");  // nullopt if absent/null
//
// Supported T: std::string, bool, int, std::int64_t, std::uint64_t, double,
// std::vector<std::string>, std::vector<double>.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace wand {

template <class T>
T field(const nlohmann::json& j, const char* name);

template <class T>
std::optional<T> optional_field(const nlohmann::json& j, const char* name);

template <class T>
T field_or(const nlohmann::json& j, const char* name, T fallback) {
  auto v = optional_field<T>(j, name);
  return v ? *v : fallback;
}

// Throws Error(kBadRequest) unless j is an object; `what` names the message.
void require_object(const nlohmann::json& j, const std::string& what);

// A message tagged by its "type" field: checks the object, reads the type and returns
// decode(type, j); a decoding error is rethrown with the type in front of its message.
//   Request r = decode_tagged<Request>(j, "request", decode);
template <class T, class Decode>
T decode_tagged(const nlohmann::json& j, const std::string& what, Decode&& decode);

}  // namespace wand

#include "common/error.h"

template <class T, class Decode>
T wand::decode_tagged(const nlohmann::json& j, const std::string& what, Decode&& decode) {
  require_object(j, what);
  const std::string type = field<std::string>(j, "type");
  try {
    return decode(type, j);
  } catch (const Error& e) {
    throw Error(e.code(), type + ": " + e.what());
  }
}
