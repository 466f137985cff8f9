#include "daemon/access.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"

namespace wand::daemon {

void Access::set_admin_group(std::string group) {
  std::lock_guard<std::mutex> lock(mu_);
  admin_group_ = std::move(group);
}

Peer Access::identify(int fd) const {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw Error(ErrorCode::kIo, std::string("SO_PEERCRED: ") + std::strerror(errno));
  }
  Peer p;
  p.uid = cred.uid;
  p.gid = cred.gid;
  p.pid = cred.pid;
  p.admin = is_admin(p.uid, p.gid);
  return p;
}

bool Access::is_admin(unsigned uid, unsigned gid) const {
  if (uid == 0 || uid == ::geteuid()) return true;
  std::string group;
  {
    std::lock_guard<std::mutex> lock(mu_);
    group = admin_group_;
  }
  if (group.empty()) return false;
  struct group gr {};
  struct group* grp = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &grp) != 0 || !grp) return false;
  const gid_t admin_gid = grp->gr_gid;
  if (gid == admin_gid) return true;
  struct passwd pw {};
  struct passwd* pwp = nullptr;
  std::vector<char> pbuf(16384);
  if (::getpwuid_r(uid, &pw, pbuf.data(), pbuf.size(), &pwp) != 0 || !pwp) return false;
  int n = 64;
  std::vector<gid_t> groups(n);
  if (::getgrouplist(pwp->pw_name, pwp->pw_gid, groups.data(), &n) < 0) {
    groups.resize(n);
    if (::getgrouplist(pwp->pw_name, pwp->pw_gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[i] == admin_gid) return true;
  }
  return false;
}

}  // namespace wand::daemon
