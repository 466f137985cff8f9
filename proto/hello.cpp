#include "proto/hello.h"

#include "common/json_fields.h"

namespace wand::proto {

void to_json(nlohmann::json& j, const Hello& m) {
  j = {{"type", "hello"}, {"version", m.version}, {"capabilities", m.capabilities},
       {"agent", m.agent}};
  if (m.uid) j["uid"] = *m.uid;
  if (m.gid) j["gid"] = *m.gid;
  if (m.admin) j["admin"] = *m.admin;
}

void from_json(const nlohmann::json& j, Hello& m) {
  require_object(j, "hello");
  m.version = field<int>(j, "version");
  m.capabilities = field_or<std::vector<std::string>>(j, "capabilities", {});
  m.agent = field_or<std::string>(j, "agent", "");
  if (auto v = optional_field<std::int64_t>(j, "uid")) m.uid = static_cast<unsigned>(*v);
  if (auto v = optional_field<std::int64_t>(j, "gid")) m.gid = static_cast<unsigned>(*v);
  m.admin = optional_field<bool>(j, "admin");
}

}  // namespace wand::proto
