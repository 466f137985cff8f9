#include "common/json_fields.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "common/error.h"

namespace wand {

using nlohmann::json;

namespace {

[[noreturn]] void type_error(const char* name, const char* expected, const json& v) {
  throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "': expected " + expected +
                                          ", got " + v.type_name());
}

template <class T>
T convert(const json& v, const char* name);

template <>
std::string convert<std::string>(const json& v, const char* name) {
  if (!v.is_string()) type_error(name, "a string", v);
  return v.get<std::string>();
}
template <>
bool convert<bool>(const json& v, const char* name) {
  if (!v.is_boolean()) type_error(name, "a boolean", v);
  return v.get<bool>();
}
template <>
std::int64_t convert<std::int64_t>(const json& v, const char* name) {
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "': out of range");
    }
    return static_cast<std::int64_t>(u);
  }
  if (!v.is_number_integer()) type_error(name, "an integer", v);
  return v.get<std::int64_t>();
}
template <>
int convert<int>(const json& v, const char* name) {
  std::int64_t x = convert<std::int64_t>(v, name);
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) {
    throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "': " +
                                            std::to_string(x) + " is out of range");
  }
  return static_cast<int>(x);
}
template <>
std::uint64_t convert<std::uint64_t>(const json& v, const char* name) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "': must not be negative");
  }
  type_error(name, "a non-negative integer", v);
}
template <>
double convert<double>(const json& v, const char* name) {
  if (!v.is_number()) type_error(name, "a number", v);
  return v.get<double>();
}
template <>
std::vector<std::string> convert<std::vector<std::string>>(const json& v, const char* name) {
  if (!v.is_array()) type_error(name, "an array of strings", v);
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) type_error(name, "an array of strings", v);
    out.push_back(e.get<std::string>());
  }
  return out;
}
template <>
std::vector<double> convert<std::vector<double>>(const json& v, const char* name) {
  if (!v.is_array()) type_error(name, "an array of numbers", v);
  std::vector<double> out;
  for (const auto& e : v) {
    if (!e.is_number()) type_error(name, "an array of numbers", v);
    out.push_back(e.get<double>());
  }
  return out;
}

}  // namespace

template <class T>
T field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    throw Error(ErrorCode::kBadRequest, std::string("field '") + name + "' is missing");
  }
  return convert<T>(*it, name);
}

template <class T>
std::optional<T> optional_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return convert<T>(*it, name);
}

void require_object(const json& j, const std::string& what) {
  if (!j.is_object()) {
    throw Error(ErrorCode::kBadRequest,
                what + ": expected a JSON object, got " + std::string(j.type_name()));
  }
}

#define WAND_PROTO_FIELD(T)                                            \
  template T field<T>(const json&, const char*);                       \
  template std::optional<T> optional_field<T>(const json&, const char*);
WAND_PROTO_FIELD(std::string)
WAND_PROTO_FIELD(bool)
WAND_PROTO_FIELD(int)
WAND_PROTO_FIELD(std::int64_t)
WAND_PROTO_FIELD(std::uint64_t)
WAND_PROTO_FIELD(double)
WAND_PROTO_FIELD(std::vector<std::string>)
WAND_PROTO_FIELD(std::vector<double>)
#undef WAND_PROTO_FIELD

}  // namespace wand
