// How a sched::JobRecord is shown on the wire (proto::JobInfo), with the ETA
// derived from the run's mean seconds per step, and what of the server's own
// errors a user may read (Note [Server paths]).
//
//   proto::JobInfo j = to_job_info(record, peer, ctx.server_paths);  // a user's view
//   std::string m = user_message(peer, ctx.server_paths, e.what());
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "daemon/access.h"
#include "proto/responses.h"
#include "scheduler/job_record.h"

namespace wand::daemon {

// Note [Server paths]: where the server keeps its files (the state dir, the model
// directories, the spool and pack dirs) is the admins' business (issue 15: `models` shows
// users no paths). The messages the daemon passes on from below name them, though: a full
// disk is "write /var/lib/wand/checkpoints/j-3.ckpt.tmp: No space left on device", a failed
// read names the model's file. A user (not an admin: Access) gets each known directory
// replaced by its label ("<state_dir>", "<model i2v-A14B>", ...), and a full disk as its
// cause without any path ("the daemon's disk is full (No space left on device)"); admins
// get the message unchanged, and the daemon's log keeps it whole for them.
struct ServerPaths {
  // (directory, label), e.g. ("/var/lib/wand", "<state_dir>"). The longest directory that
  // starts a path wins (a spool inside the state dir is "<spool>"); a directory added twice
  // keeps its first label.
  std::vector<std::pair<std::string, std::string>> dirs;
  void add(const std::string& dir, const std::string& label);
  // message with every known directory replaced by its label.
  std::string hide(const std::string& message) const;
  // Every string inside j through hide() (the tier report's spool path, in `tiers` and in
  // each watch event).
  nlohmann::json hide_json(const nlohmann::json& j) const;
};

// What a user is told of a full disk (DiskFullError's "<what> <path>: <cause>"): the cause,
// no path. `what` says what it meant for the request ("nothing was changed").
std::string disk_full_text(const std::string& error, const std::string& what);

// message as `peer` may read it (Note [Server paths]): unchanged for admins.
std::string user_message(const Peer& peer, const ServerPaths& paths, const std::string& message);

// A JobEvent as `peer` may read it: the job's error and the tiers' paths (Note [Server paths]).
proto::JobEvent event_for(const Peer& peer, const ServerPaths& paths, proto::JobEvent ev);

proto::JobInfo to_job_info(const sched::JobRecord& r);
// The record as `peer` sees it: its error through user_message.
proto::JobInfo to_job_info(const sched::JobRecord& r, const Peer& peer, const ServerPaths& paths);

}  // namespace wand::daemon
