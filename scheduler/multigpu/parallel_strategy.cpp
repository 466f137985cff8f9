#include "scheduler/multigpu/parallel_strategy.h"

#include "common/error.h"

namespace wand::sched {

std::string ParallelStrategy::name() const {
  switch (kind) {
    case ParallelKind::kSingle: return "single";
    case ParallelKind::kCfgParallel: return "cfg-parallel";
    case ParallelKind::kUlysses: return "ulysses-" + std::to_string(seq_degree);
    case ParallelKind::kCfgUlysses: return "cfg2xulysses-" + std::to_string(seq_degree);
  }
  return "?";
}

ParallelStrategy parse_strategy(const std::string& text) {
  auto degree = [&](const std::string& prefix) {
    const std::string rest = text.substr(prefix.size());
    std::size_t used = 0;
    int n = 0;
    try {
      n = std::stoi(rest, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != rest.size() || rest.empty() || n < 1) {
      throw Error(ErrorCode::kBadRequest, "strategy '" + text + "': expected " + prefix + "<N>, N >= 1");
    }
    return n;
  };
  if (text == "single") return {ParallelKind::kSingle, 1};
  if (text == "cfg-parallel") return {ParallelKind::kCfgParallel, 1};
  if (text.rfind("ulysses-", 0) == 0) return {ParallelKind::kUlysses, degree("ulysses-")};
  if (text.rfind("cfg2xulysses-", 0) == 0) return {ParallelKind::kCfgUlysses, degree("cfg2xulysses-")};
  throw Error(ErrorCode::kBadRequest, "unknown strategy '" + text +
                                          "' (single, cfg-parallel, ulysses-<N>, cfg2xulysses-<N>)");
}

std::vector<ParallelStrategy> strategies_for(int gpus, std::int64_t num_heads) {
  std::vector<ParallelStrategy> out;
  if (gpus == 1) out.push_back({ParallelKind::kSingle, 1});
  if (gpus == 2) out.push_back({ParallelKind::kCfgParallel, 1});
  if (gpus >= 2 && num_heads % gpus == 0) out.push_back({ParallelKind::kUlysses, gpus});
  if (gpus >= 4 && gpus % 2 == 0 && num_heads % (gpus / 2) == 0) out.push_back({ParallelKind::kCfgUlysses, gpus / 2});
  return out;
}

ParallelStrategy choose_strategy(int gpus, std::int64_t num_heads) {
  for (int n = gpus; n >= 2; --n) {
    if (n == 2) return {ParallelKind::kCfgParallel, 1};
    if (n % 2 == 0 && num_heads % (n / 2) == 0) return {ParallelKind::kCfgUlysses, n / 2};
    if (num_heads % n == 0) return {ParallelKind::kUlysses, n};
  }
  return {ParallelKind::kSingle, 1};
}

}  // namespace wand::sched
