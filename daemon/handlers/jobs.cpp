#include "daemon/handlers/context.h"
#include "daemon/job_view.h"
#include "proto/error_codes.h"

namespace wand::daemon {

std::variant<sched::JobRecord, proto::ErrorReply> visible_job(HandlerContext& ctx,
                                                              const Peer& peer,
                                                              const std::string& id) {
  auto r = ctx.queue.get(id);
  if (!r || !Access::can_see(peer, *r)) {
    return error_reply(proto::errc::kNotFound, "no job " + id);
  }
  return *r;
}

proto::Response handle_list(HandlerContext& ctx, const Peer& peer, const proto::ListJobs&) {
  proto::JobList out;
  for (const auto& r : ctx.queue.list()) {
    if (!Access::can_see(peer, r)) continue;
    proto::JobInfo info = to_job_info(r, peer, ctx.server_paths);
    // Issue 15: a list reply carries every job; long prompts are cut (status has them whole).
    constexpr std::size_t kListPrompt = 200;
    if (info.prompt.size() > kListPrompt) {
      std::size_t cut = kListPrompt;
      while (cut > 0 && (static_cast<unsigned char>(info.prompt[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
      info.prompt.resize(cut);
      info.prompt += "...";
    }
    out.jobs.push_back(std::move(info));
  }
  return out;
}

proto::Response handle_status(HandlerContext& ctx, const Peer& peer, const proto::GetStatus& m) {
  auto v = visible_job(ctx, peer, m.job);
  if (auto* e = std::get_if<proto::ErrorReply>(&v)) return *e;
  return to_job_info(std::get<sched::JobRecord>(v), peer, ctx.server_paths);
}

proto::Response handle_cancel(HandlerContext& ctx, const Peer& peer, const proto::Cancel& m) {
  auto v = visible_job(ctx, peer, m.job);
  if (auto* e = std::get_if<proto::ErrorReply>(&v)) return *e;
  auto outcome = ctx.queue.cancel(m.job);
  if (!outcome) return error_reply(proto::errc::kNotFound, "no job " + m.job);
  return proto::CancelResult{m.job, sched::phase_name(outcome->phase), outcome->pending};
}

}  // namespace wand::daemon
