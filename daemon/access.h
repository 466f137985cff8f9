// Access: who is on the other end of a connection (SO_PEERCRED) and what they may
// see. A user lists, watches, fetches and cancels only their own jobs; root, the
// daemon's own uid and members of the admin group (configuration) see all. A job
// that is not visible is reported as not found (its existence is not revealed).
//
//   Peer p = access.identify(fd);            // throws Error(kIo) when SO_PEERCRED fails
//   if (!access.can_see(p, record)) ...      // -> not_found
//
// Thread-safety: set_admin_group and identify may race (SIGHUP reload): guarded by mu_.
#pragma once

#include <mutex>
#include <string>

#include "scheduler/job_record.h"

namespace wand::daemon {

struct Peer {
  unsigned uid = 0;
  unsigned gid = 0;
  int pid = 0;
  bool admin = false;
};

class Access {
 public:
  explicit Access(std::string admin_group) : admin_group_(std::move(admin_group)) {}
  void set_admin_group(std::string group);
  Peer identify(int fd) const;
  bool is_admin(unsigned uid, unsigned gid) const;
  static bool can_see(const Peer& p, const sched::JobRecord& r) {
    return p.admin || p.uid == r.spec.owner_uid;
  }

 private:
  mutable std::mutex mu_;
  std::string admin_group_;  // guarded by mu_
};

}  // namespace wand::daemon
