// ParallelStrategy: how one job's denoising step is spread over N cards, and the
// choice among the strategies that apply (issue 7).
//
//   ParallelStrategy s = choose_strategy(/*gpus=*/4, /*num_heads=*/40);   // cfg2 x ulysses-2
//   for (const ParallelStrategy& f : strategies_for(4, 40)) ...            // every forced one
//   ParallelStrategy p = parse_strategy("ulysses-2");                      // throws kBadRequest
//
// Kinds (rank q of a 2 x S strategy is branch b = q / S, sequence position s = q % S):
//   single        1 card, both CFG branches interleaved per block;
//   cfg-parallel  2 cards, the conditional branch on rank 0, the unconditional on rank 1;
//   ulysses-N     N cards, both branches, the sequence split N ways (heads % N == 0);
//   cfg2xulysses-S  2 x S cards: each branch Ulysses over its own S cards.
//
// Note [Strategy choice]: every strategy streams all of a step's block weights to every
// card (each card holds the whole model's blocks in turn), so what differs is compute
// and communication. CFG-parallel halves each card's compute with no traffic inside a
// forward (one all-gather of the prediction per step); Ulysses-N cuts compute N ways
// but moves 4 all-to-alls of the activations per block. So: 1 card -> single; 2 ->
// cfg-parallel; 2 S (S >= 2, heads % S == 0) -> cfg2 x ulysses-S; odd N with
// heads % N == 0 -> ulysses-N; otherwise the largest of those that fits in N cards
// (the rest of the cards stay idle for this job: job-parallel can use them). Example:
// A14B (40 heads) on 8 cards -> cfg2xulysses-4; on 3 cards -> ulysses-3 can't (40 % 3)
// -> cfg-parallel on 2 cards.
// Free functions and a value type; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wand::sched {

enum class ParallelKind { kSingle, kCfgParallel, kUlysses, kCfgUlysses };

struct ParallelStrategy {
  ParallelKind kind = ParallelKind::kSingle;
  int seq_degree = 1;  // Ulysses degree: ranks per sequence group

  bool cfg_split() const { return kind == ParallelKind::kCfgParallel || kind == ParallelKind::kCfgUlysses; }
  int ranks() const { return (cfg_split() ? 2 : 1) * seq_degree; }
  // "single", "cfg-parallel", "ulysses-4", "cfg2xulysses-2".
  std::string name() const;
  bool operator==(const ParallelStrategy& o) const { return kind == o.kind && seq_degree == o.seq_degree; }
};

// Inverse of name(); throws wand::Error(kBadRequest) naming the text.
ParallelStrategy parse_strategy(const std::string& text);
// Every strategy that uses exactly `gpus` cards for a model with num_heads heads.
std::vector<ParallelStrategy> strategies_for(int gpus, std::int64_t num_heads);
// The planner's pick for up to `gpus` cards (Note [Strategy choice]).
ParallelStrategy choose_strategy(int gpus, std::int64_t num_heads);

}  // namespace wand::sched
