#include <algorithm>

#include "daemon/handlers/context.h"
#include "proto/error_codes.h"
#include "proto/version.h"
#include "scheduler/durable_file.h"

namespace wand::daemon {

std::vector<proto::Response> handle_fetch(HandlerContext& ctx, const Peer& peer,
                                          const proto::Fetch& m) {
  auto v = visible_job(ctx, peer, m.job);
  if (auto* e = std::get_if<proto::ErrorReply>(&v)) return {*e};
  const sched::JobRecord& r = std::get<sched::JobRecord>(v);
  if (r.phase != sched::JobPhase::kDone) {
    return {error_reply(proto::errc::kInvalidState,
                        "job " + r.id + " is " + sched::phase_name(r.phase) + ", not done")};
  }
  // The daemon reads its own result file; it never opens a path a client names.
  std::vector<std::uint8_t> bytes = sched::read_file(ctx.store.result_path(r.id, r.result_format));
  std::vector<proto::Response> out;
  for (std::size_t off = 0; off < bytes.size(); off += proto::kFetchChunkBytes) {
    std::size_t n = std::min(proto::kFetchChunkBytes, bytes.size() - off);
    out.push_back(proto::FetchChunk{r.id, off, {bytes.begin() + off, bytes.begin() + off + n}});
  }
  out.push_back(proto::FetchEnd{r.id, bytes.size(), r.result_format});
  return out;
}

}  // namespace wand::daemon
