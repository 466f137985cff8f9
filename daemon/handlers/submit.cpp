#include "common/error.h"
#include "common/log.h"
#include "daemon/handlers/context.h"
#include "proto/error_codes.h"

namespace wand::daemon {

proto::ErrorReply error_reply(const char* code, std::string message) {
  return proto::ErrorReply{code, std::move(message)};
}

sched::JobSpec spec_from_params(const proto::JobParams& p, const Peer& peer) {
  return sched::JobSpec{p, peer.uid, peer.gid};
}

proto::Response handle_submit(HandlerContext& ctx, const Peer& peer, const proto::Submit& m) {
  if (!ctx.accepting) return error_reply(proto::errc::kShuttingDown, "wand is shutting down");
  sched::JobSpec spec = spec_from_params(m.job, peer);
  try {
    sched::validate_job_spec(spec);
  } catch (const Error& e) {
    return error_reply(proto::errc::kBadRequest, e.what());
  }
  if (!ctx.registry.has_model(spec.model)) {
    return error_reply(proto::errc::kUnknownModel,
                       "unknown model '" + spec.model + "' (see `wanctl models`)");
  }
  // Note [Daemon LoRAs]: the effective set, each name resolved to a file and checked against the model.
  try {
    std::filesystem::path dir;
    for (const auto& m : ctx.registry.models()) {
      if (m.name == spec.model) dir = m.dir;
    }
    ctx.loras.resolve(spec, dir);
  } catch (const Error& e) {
    return error_reply(proto::errc::kBadRequest, user_message(peer, ctx.server_paths, e.what()));
  }
  // Model-specific checks, without loading the model on the io thread (that can
  // take minutes): see PipelineRegistry::validate.
  try {
    ctx.registry.validate(spec.model, spec);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kBadRequest) return error_reply(proto::errc::kBadRequest, e.what());
    throw;
  }
  if (ctx.admit) {  // issue 15: refuse what cannot fit (Note [Job admission], daemon.cpp)
    try {
      ctx.admit(spec);
    } catch (const Error& e) {
      return error_reply(proto::errc::kBadRequest, e.what());
    }
  }
  std::string id = ctx.queue.submit(std::move(spec));  // journaled before we answer
  return proto::Submitted{id};
}

}  // namespace wand::daemon
