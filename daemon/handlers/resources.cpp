#include "common/error.h"
#include "daemon/handlers/context.h"
#include "proto/error_codes.h"

namespace wand::daemon {

proto::Response handle_tiers(HandlerContext& ctx, const Peer& peer, const proto::GetTiers&) {
  proto::TiersReport t = ctx.resources.tiers();
  if (!peer.admin) {  // Note [Server paths]: the spool's path is "<spool>/wand-spool-...bin"
    t.tiers = ctx.server_paths.hide_json(t.tiers);
    t.note = ctx.server_paths.hide(t.note);
  }
  return t;
}

proto::Response handle_plan(HandlerContext& ctx, const Peer& peer, const proto::GetPlan& m) {
  sched::JobSpec spec = spec_from_params(m.job, peer);
  try {
    sched::validate_job_spec(spec);
  } catch (const Error& e) {
    return error_reply(proto::errc::kBadRequest, e.what());
  }
  if (!ctx.registry.has_model(spec.model)) {
    return error_reply(proto::errc::kUnknownModel, "unknown model '" + spec.model + "'");
  }
  try {  // the job's LoRAs as submit resolves them (Note [Daemon LoRAs]): the plan counts them
    std::filesystem::path dir;
    for (const auto& e : ctx.registry.models()) {
      if (e.name == spec.model) dir = e.dir;
    }
    ctx.loras.resolve(spec, dir);
  } catch (const Error& e) {
    return error_reply(proto::errc::kBadRequest, user_message(peer, ctx.server_paths, e.what()));
  }
  return ctx.resources.plan(spec);
}

proto::Response handle_models(HandlerContext& ctx, const Peer& peer, const proto::ListModels&) {
  proto::ModelList out;
  for (const auto& m : ctx.registry.models()) {
    // Issue 15: where the server keeps its models is the admins' business.
    proto::ModelInfo info;
    info.name = m.name;
    info.dir = peer.admin ? m.dir.string() : std::string();
    info.pipeline = m.factory;
    // Its tasks and sizes from the model's configs (small files, never weights).
    try {
      static_cast<ModelTraits&>(info) = ctx.registry.traits(m.name);
    } catch (const std::exception& e) {
      info.error = user_message(peer, ctx.server_paths, e.what());  // Note [Server paths]
    }
    out.models.push_back(std::move(info));
  }
  ctx.loras.describe(out, peer.admin);  // Note [Daemon LoRAs]
  return out;
}

}  // namespace wand::daemon
