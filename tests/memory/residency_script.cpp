#include "tests/memory/residency_script.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "memory/residency_manager.h"

namespace wand::memory::testing {

std::uint64_t fnv1a(const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

ScriptResult run_residency_script(MemoryPool& pool, int dev, const std::vector<BlobId>& blobs,
                                  const std::vector<std::size_t>& order, std::uint64_t window_bytes) {
  ScriptResult out;
  auto& tier = dynamic_cast<DeviceTier&>(pool.tier(dev));
  std::vector<ScheduleEntry> schedule;
  for (std::size_t i : order) schedule.push_back({blobs[i], pool.copy_bytes(blobs[i], dev)});
  ResidencyManager rm(schedule, tier.bytes_capacity(), window_bytes);
  const TierStats dev0 = tier.stats();
  const TierStats host0 = pool.tier(pool.host_tier()).stats();
  std::vector<std::uint8_t> back;
  for (std::size_t pos = 0; pos < schedule.size(); ++pos) {
    ResidencyPlan plan = rm.plan(pos, pool.resident(dev));
    std::ostringstream d;
    d << "pos=" << pos << " evict=[";
    for (BlobId id : plan.evict) d << id << ",";
    d << "] prefetch=[";
    for (BlobId id : plan.prefetch) d << id << ",";
    d << "] fits=" << plan.demand_fits;
    out.decisions.push_back(d.str());
    rm.apply(plan, pool, dev);
    out.peak_device_used = std::max(out.peak_device_used, tier.stats().bytes_used);
    PinnedCopy use = pool.pin(schedule[pos].id, dev);
    use.wait();
    back.assign(use.bytes(), 0);
    const std::uint64_t off = static_cast<std::uint64_t>(use.data() - tier.base());
    tier.copy_out(off, back.data(), back.size()).wait();
    out.checksums.push_back(fnv1a(back.data(), back.size()));
  }
  const TierStats dev1 = tier.stats();
  const TierStats host1 = pool.tier(pool.host_tier()).stats();
  out.device_bytes_in = dev1.bytes_moved_in - dev0.bytes_moved_in;
  out.device_bytes_out = dev1.bytes_moved_out - dev0.bytes_moved_out;
  out.host_bytes_in = host1.bytes_moved_in - host0.bytes_moved_in;
  out.host_bytes_out = host1.bytes_moved_out - host0.bytes_moved_out;
  return out;
}

}  // namespace wand::memory::testing
