#include "scheduler/plan/card_plan.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace wand::sched::plan {

using nlohmann::json;

namespace {

constexpr std::int64_t kMeasuredChunk = 16384;  // Note [Card plan]: measured no slower than unchunked
constexpr std::int64_t kFallbackChunks[] = {8192, 4096, 2048, 1024};
constexpr std::uint64_t kHostStagingBlocks = 4;

std::string gib(std::uint64_t b) { return format_bytes(b); }

}  // namespace

json PeakBreakdown::to_json() const {
  return {{"context", context},         {"non_block_weights", non_block}, {"weight_slots", weight_slots},
          {"resident_blocks", resident_blocks}, {"activations", activations}, {"total", total()}};
}

json CardPlan::to_json() const {
  json j = {{"device", device_index}, {"budget_bytes", budget_bytes}, {"feasible", feasible}};
  if (!feasible) {
    j["reason"] = reason;
    return j;
  }
  j["prefetch_depth"] = prefetch_depth;
  j["resident_blocks"] = resident_blocks;
  j["resident_blocks_active_expert"] = resident_active;
  j["chunk_tokens"] = chunk_tokens;
  if (!chunk_speed_measured) j["chunk_speed_measured"] = false;
  j["activation_estimate_bytes"] = activation_need;
  j["pcie_gbps_effective"] = pcie_gbps_effective;
  j["block"] = {{"gemm_s", block_one_branch.gemm_s},
                {"attention_s", block_one_branch.attention_s},
                {"elementwise_s", block_one_branch.elementwise_s},
                {"compute_s_all_branches", block_compute_s},
                {"transfer_s", block_transfer_s},
                {"comm_s", comm_s_per_block}};
  j["forward_s"] = forward_s;
  j["step_s"] = step_s;
  j["cold_step_s"] = cold_step_s;
  j["cold_steps_per_job"] = cold_steps_per_job;
  j["bound"] = bound;
  j["peak"] = peak.to_json();
  // What the device tier (memory.devices[].bytes) should hold for this plan: slots + resident blocks.
  j["recommended_device_tier_bytes"] = peak.weight_slots + peak.resident_blocks;
  return j;
}

CardPlan plan_card(const ModelShape& m, const JobGeometry& g, const DeviceSpec& dev, const Calibration& cal,
                   const CardWork& work) {
  // Note [Card plan].
  CardPlan base;
  base.device_index = dev.index;
  base.budget_bytes = dev.budget_bytes;
  const DeviceRates rates = cal.rates_for(dev.index);
  const std::uint64_t blk = m.max_block_run_bytes();
  const int L = static_cast<int>(m.num_layers);
  const int E = static_cast<int>(m.experts.size());
  std::uint64_t nb = 0, all_blocks = 0;
  for (std::size_t e = 0; e < m.experts.size(); ++e) {
    nb += m.non_block_run_bytes(e);
    all_blocks += m.blocks_run_bytes(e);
  }
  nb += g.lora.card_bytes;  // Note [LoRA cost]: held for the job beside the non-block weights
  const auto ctx = static_cast<std::uint64_t>(cal.context_bytes.value);
  const int W = std::max(1, work.ranks);
  const std::int64_t s_local = (g.tokens + W - 1) / W;
  const std::int64_t s_pad = s_local * W;
  base.block_one_branch = block_time(m, block_work(m, s_local, s_pad, W), rates, cal);
  const double c1 = base.block_one_branch.total();
  const double c = c1 * work.branches + lora_merge_s(g.lora, rates);  // one merge for both branches
  const double comm = work.comm_s_per_block;
  base.pcie_gbps_effective =
      std::min(rates.pcie_gbps.value, cal.host_mem_gbps.value / std::max(1, work.streaming_cards));
  const double t = static_cast<double>(blk) / (base.pcie_gbps_effective * 1e9);
  base.block_compute_s = c;
  base.block_transfer_s = t;
  base.comm_s_per_block = comm;

  auto eval = [&](std::int64_t chunk) {
    CardPlan p = base;
    p.chunk_tokens = chunk;
    // fp8 blocks are dequantized beside their slot while they run (Note [fp8 dequantization]).
    p.activation_need = activation_bytes(s_local, m.dim, m.ffn_dim, m.text_len, chunk, m.run_bytes, work.branches) +
                        m.max_block_dequant_bytes();
    const auto act = static_cast<std::uint64_t>(std::ceil(static_cast<double>(p.activation_need) *
                                                          cal.activation_cap_factor.value));
    p.peak.context = ctx;
    p.peak.non_block = nb;
    p.peak.activations = act;
    const std::uint64_t fixed = ctx + nb + act;
    if (dev.tier_bytes > 0) {
      // Note [Fixed tier].
      if (dev.tier_bytes < 2 * blk || dev.budget_bytes < fixed + dev.tier_bytes) {
        p.feasible = false;
        p.reason = "device " + std::to_string(dev.index) + ": budget " + gib(dev.budget_bytes) + " < context " +
                   gib(ctx) + " + non-block weights " + gib(nb) + " + activations " + gib(act) +
                   (chunk > 0 ? " (chunk " + std::to_string(chunk) + " tokens)" : std::string(" (unchunked)")) +
                   " + device tier " + gib(dev.tier_bytes) + " = " + gib(fixed + dev.tier_bytes) +
                   (dev.tier_bytes < 2 * blk ? " (and the tier holds fewer than 2 blocks of " + gib(blk) + ")" : "");
        return p;
      }
    } else if (dev.budget_bytes < fixed + 2 * blk) {
      p.feasible = false;
      p.reason = "device " + std::to_string(dev.index) + ": budget " + gib(dev.budget_bytes) + " < context " +
                 gib(ctx) + " + non-block weights " + gib(nb) + " + activations " + gib(act) +
                 (chunk > 0 ? " (chunk " + std::to_string(chunk) + " tokens)" : std::string(" (unchunked)")) +
                 " + 2 block slots 2 x " + gib(blk) + " = " + gib(fixed + 2 * blk);
      return p;
    }
    p.feasible = true;
    const std::uint64_t free = dev.tier_bytes > 0 ? dev.tier_bytes : dev.budget_bytes - fixed;
    if (free >= all_blocks) {
      p.prefetch_depth = 0;
      p.resident_blocks = E * L;
      p.resident_active = L;
      p.peak.resident_blocks = all_blocks;
      if (dev.tier_bytes > 0) p.peak.weight_slots = dev.tier_bytes - all_blocks;  // the whole tier is held
      p.step_s = L * (c + comm);
      p.cold_step_s = p.step_s;
      p.cold_steps_per_job = 0;
      p.forward_s = L * (c1 + comm / work.branches);
      p.bound = "resident";
      return p;
    }
    p.prefetch_depth = free >= 3 * blk ? 2 : 1;
    p.peak.weight_slots = static_cast<std::uint64_t>(p.prefetch_depth + 1) * blk;
    const auto r = static_cast<int>(std::min<std::uint64_t>((free - p.peak.weight_slots) / blk,
                                                           static_cast<std::uint64_t>(E * L)));
    p.resident_blocks = r;
    p.resident_active = std::min(r, L);
    p.peak.resident_blocks = static_cast<std::uint64_t>(r) * blk;
    if (dev.tier_bytes > 0) p.peak.weight_slots = dev.tier_bytes - p.peak.resident_blocks;  // the whole tier
    const int streamed = L - p.resident_active;
    const double per_streamed = std::max(c + comm, t);
    p.step_s = p.resident_active * (c + comm) + streamed * per_streamed;
    p.cold_step_s = L * per_streamed;
    p.cold_steps_per_job = (E >= 2 && r < E * L) ? E : 0;
    p.forward_s = p.resident_active * (c1 + comm / work.branches) +
                  streamed * std::max(c1 + comm / work.branches, t);
    p.bound = t > c + comm ? "pcie" : "compute";
    return p;
  };

  std::vector<std::int64_t> primary = {0};
  if (kMeasuredChunk < s_local) primary.push_back(kMeasuredChunk);
  CardPlan best;
  bool have = false;
  CardPlan last_fail;
  for (std::int64_t ch : primary) {
    CardPlan p = eval(ch);
    if (!p.feasible) {
      last_fail = p;
      continue;
    }
    // Ties (within 0.5 %) go to the earlier candidate (unchunked first).
    if (!have || p.step_s < best.step_s * 0.995) {
      best = p;
      have = true;
    }
  }
  if (!have) {
    for (std::int64_t ch : kFallbackChunks) {
      if (ch >= s_local) continue;
      CardPlan p = eval(ch);
      if (p.feasible) {
        p.chunk_speed_measured = false;
        return p;
      }
      last_fail = p;
    }
    return last_fail;
  }
  return best;
}

json HostPlan::to_json() const {
  return {{"budget_bytes", budget_bytes},      {"dit_bytes", dit_bytes},
          {"dit_in_host", dit_in_host},        {"staging_bytes", staging_bytes},
          {"t5_in_host", t5_in_host},          {"t5_bytes", t5_bytes},
          {"disk_bytes_per_job", disk_bytes_per_job}, {"t5_disk_bytes_per_job", t5_disk_bytes_per_job},
          {"disk_bytes_first_job", disk_bytes_first_job}, {"first_load_bytes", first_load_bytes},
          {"switch_wait_bytes", switch_wait_bytes}, {"first_wait_bytes", first_wait_bytes},
          {"total", total()}};
}

HostPlan plan_host(const ModelShape& m, const JobGeometry& g, std::uint64_t host_bytes, const Calibration&) {
  HostPlan h;
  h.budget_bytes = host_bytes;
  h.t5_bytes = m.t5_bytes;
  std::uint64_t max_expert = 0, stored = 0;
  for (std::size_t e = 0; e < m.experts.size(); ++e) {
    h.dit_bytes += m.expert_run_bytes(e);
    max_expert = std::max(max_expert, m.expert_run_bytes(e));
    stored += m.experts[e].stored_bytes();
  }
  if (m.experts_share_shards && m.experts.size() >= 2) stored = m.experts[0].stored_bytes();
  const std::uint64_t blk = m.max_block_run_bytes();
  if (host_bytes >= h.dit_bytes) {
    h.dit_in_host = h.dit_bytes;
    h.t5_in_host = host_bytes >= h.dit_bytes + h.t5_bytes;
    h.disk_bytes_per_job = 0;
  } else {
    h.staging_bytes = kHostStagingBlocks * blk;
    if (host_bytes < h.staging_bytes) {
      throw Error(ErrorCode::kConfig, "host budget " + gib(host_bytes) + " cannot hold the disk -> host staging window " +
                                          std::to_string(kHostStagingBlocks) + " x block " + gib(blk) + " = " +
                                          gib(h.staging_bytes) + " (the DiT needs " + gib(h.dit_bytes) +
                                          " to stay in host memory)");
    }
    const std::uint64_t cache = host_bytes - h.staging_bytes;
    h.dit_in_host = cache;
    if (m.experts.size() >= 2 && cache >= max_expert) {
      // Two switches per job (high -> low, low -> next job's high); each reads what the cache
      // could not keep of the next expert: dit - cache.
      h.disk_bytes_per_job = 2 * (h.dit_bytes - cache);
      // Note [Switch waits]: beside the active expert the cache holds cache - expert bytes of the
      // next one ahead of the switch; the rest arrives as the active expert's blocks leave, so
      // the switch step waits for it (measured on the H100, 2026-11-25: 22.7 s at step 26 of a
      // 480p job with a 32 GiB host budget). A cold job also waits for its first expert.
      const std::uint64_t room = cache - max_expert;
      h.switch_wait_bytes = max_expert > room ? max_expert - room : 0;
      h.first_wait_bytes = max_expert;
    } else {
      // The active expert does not fit: every forward re-reads what is not cached.
      const std::uint64_t per_fwd_hi = m.expert_run_bytes(0) > cache ? m.expert_run_bytes(0) - cache : 0;
      h.disk_bytes_per_job = static_cast<std::uint64_t>(g.steps_high) * per_fwd_hi;
      if (m.experts.size() >= 2) {
        const std::uint64_t per_fwd_lo = m.expert_run_bytes(1) > cache ? m.expert_run_bytes(1) - cache : 0;
        h.disk_bytes_per_job += static_cast<std::uint64_t>(g.steps_low) * per_fwd_lo;
      }
    }
  }
  h.first_load_bytes = stored + (h.t5_in_host ? h.t5_bytes : 0);
  // umT5 not kept in host memory streams from disk once per job (both prompts go through each
  // layer while it is on the card: T5Stream::encode_texts). Counted as the whole .pth: the
  // token-embedding table (2.1 GB of the 11.4 GB release file) is never read whole, only the
  // rows of the prompts' tokens, so this overstates it by up to that much.
  h.t5_disk_bytes_per_job = h.t5_in_host ? 0 : h.t5_bytes;
  // A cold host tier (a daemon's first job, a benchmark process): the DiT blocks come from disk
  // once each when they cannot all stay (or the first load when they can), plus umT5.
  h.disk_bytes_first_job = (h.dit_in_host < h.dit_bytes ? h.dit_bytes : stored) + h.t5_bytes;
  return h;
}

void discount_device_residency(HostPlan& h, const std::vector<CardPlan>& cards) {
  bool all_resident = !cards.empty();
  for (const auto& c : cards) all_resident = all_resident && c.feasible && !c.streaming();
  if (all_resident) h.disk_bytes_per_job = 0;
}

json JobTimes::to_json() const {
  return {{"t5_s", t5_s},           {"steps_s", steps_s}, {"disk_floor_s", disk_floor_s},
          {"switch_wait_s", switch_wait_s}, {"denoise_s", denoise_s}, {"vae_s", vae_s},
          {"job_s", job_s},         {"first_job_s", first_job_s}};
}

JobTimes job_times(const ModelShape& m, const JobGeometry& g, const HostPlan& h, const Calibration& cal, double step_s,
                   double cold_step_s, int cold_steps) {
  JobTimes t;
  const DeviceRates r = cal.device;
  // umT5: prompt and negative prompt (the prompt alone when no step guides, Note [Guidance 1]),
  // text_len tokens each, 2 FLOP per param per token; its bf16 weights cross PCIe (from host) or
  // come from disk when the host tier cannot keep them.
  const double t5_params = static_cast<double>(m.t5_bytes) / 2.0;
  const double prompts = g.branches < 2 ? 1.0 : 2.0;
  const double t5_compute = prompts * 2.0 * t5_params * static_cast<double>(m.text_len) / (r.gemm_tflops.value * 1e12);
  const double t5_load = h.t5_in_host ? static_cast<double>(m.t5_bytes) / (r.pcie_gbps.value * 1e9)
                                      : static_cast<double>(m.t5_bytes) / (cal.disk_gbps.value * 1e9);
  t.t5_s = t5_compute + t5_load;
  const int cold = std::min(cold_steps, g.steps);
  t.steps_s = (g.steps - cold) * step_s + cold * cold_step_s;
  t.disk_floor_s = static_cast<double>(h.disk_bytes_per_job) / (cal.disk_gbps.value * 1e9);
  // Note [Switch waits]: the read of what could not be prefetched overlaps one step's compute.
  const double disk = cal.disk_gbps.value * 1e9;
  const bool two = m.experts.size() >= 2 && g.steps_high > 0 && g.steps_low > 0;
  t.switch_wait_s = std::max(0.0, static_cast<double>(h.switch_wait_bytes) / disk - step_s);
  const double first_wait = std::max(0.0, static_cast<double>(h.first_wait_bytes) / disk - cold_step_s);
  t.denoise_s = std::max(t.steps_s + (two ? 2 * t.switch_wait_s : 0.0), t.disk_floor_s);
  t.vae_s = static_cast<double>(g.width) * g.height * g.frames * cal.vae_decode_ns_per_pixel_frame.value * 1e-9;
  t.job_s = t.t5_s + t.denoise_s + t.vae_s;
  t.first_job_s = t.t5_s + t.steps_s + first_wait + (two ? t.switch_wait_s : 0.0) + t.vae_s;
  return t;
}

}  // namespace wand::sched::plan
