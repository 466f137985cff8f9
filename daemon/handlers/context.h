// HandlerContext: what request handlers work with. One handler file per request
// family (handlers/*.cpp): request in, response out; they never touch sockets.
// Errors are returned as proto::ErrorReply with a stable code (proto/error_codes.h).
//
//   proto::Response r = handle_submit(ctx, peer, submit);
//
// Threads: handlers run on the daemon's io thread.
#pragma once

#include <functional>
#include <optional>

#include "daemon/access.h"
#include "daemon/job_view.h"
#include "daemon/lora_catalog.h"
#include "daemon/resource_provider.h"
#include "proto/requests.h"
#include "proto/responses.h"
#include "scheduler/checkpoint_store.h"
#include "scheduler/job_queue.h"
#include "scheduler/pipeline_registry.h"

namespace wand::daemon {

struct HandlerContext {
  sched::JobQueue& queue;
  sched::PipelineRegistry& registry;
  sched::CheckpointStore& store;
  ResourceProvider& resources;
  Access& access;
  bool accepting = true;  // false once shutdown began
  // Issue 15 (poison jobs): throws Error naming the bytes when the job cannot fit the
  // daemon's host or device budgets (Note [Job admission], daemon.cpp); unset: no check.
  std::function<void(const sched::JobSpec&)> admit;
  // Note [Server paths] (job_view.h): the server's directories, hidden from users' messages.
  // Set at start and on reload (the models), on the io thread.
  ServerPaths server_paths;
  // Note [Daemon LoRAs] (lora_catalog.h): the served LoRAs and the models' defaults. Set at
  // start and on reload, on the io thread.
  LoraCatalog loras;
};

proto::ErrorReply error_reply(const char* code, std::string message);

// handlers/submit.cpp
sched::JobSpec spec_from_params(const proto::JobParams& p, const Peer& peer);
proto::Response handle_submit(HandlerContext& ctx, const Peer& peer, const proto::Submit& m);
// handlers/jobs.cpp: list, status, cancel, and the visibility check watch and fetch share
proto::Response handle_list(HandlerContext& ctx, const Peer& peer, const proto::ListJobs& m);
proto::Response handle_status(HandlerContext& ctx, const Peer& peer, const proto::GetStatus& m);
proto::Response handle_cancel(HandlerContext& ctx, const Peer& peer, const proto::Cancel& m);
// The visible job with this id, or an ErrorReply (not_found).
std::variant<sched::JobRecord, proto::ErrorReply> visible_job(HandlerContext& ctx,
                                                              const Peer& peer,
                                                              const std::string& id);
// handlers/resources.cpp: tiers, plan, models
proto::Response handle_tiers(HandlerContext& ctx, const Peer& peer, const proto::GetTiers& m);
proto::Response handle_plan(HandlerContext& ctx, const Peer& peer, const proto::GetPlan& m);
proto::Response handle_models(HandlerContext& ctx, const Peer& peer, const proto::ListModels& m);
// handlers/fetch.cpp: every frame of a fetch (chunks then end), or one ErrorReply
std::vector<proto::Response> handle_fetch(HandlerContext& ctx, const Peer& peer,
                                          const proto::Fetch& m);
// handlers/shutdown.cpp: admin only
proto::Response handle_shutdown(HandlerContext& ctx, const Peer& peer, const proto::Shutdown& m);

}  // namespace wand::daemon
