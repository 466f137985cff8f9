#!/usr/bin/env bash
# One command on the GPU machine (issue 8): one job's denoising step on 1..N cards of this
# machine with the A14B blocks streamed from ONE shared pinned host copy, each card with a
# 23 GiB budget (a 24 GiB card), at 832x480 and 1280x720, 81 frames, every strategy that applies
# (single, cfg-parallel, ulysses-N, cfg2xulysses-N/2) and the planner's choice marked.
# Writes bench/results/multigpu-<card>-x<N>-<date>.{json,md}.
#   bench/multigpu/run.sh [BUILD_DIR] [extra bench_parallel args...]
# The model (default /tmp/wand-bench-a14b, random bf16, 40 blocks, ~28 GB; the dir that
# bench/exec/run.sh writes) is written on first use. Budget: about 5 minutes on 2 H100s
# once the model exists (3 steps of each of 3 configurations at 2 sizes); pass
# `--strategies chosen` or `--sizes 832x480` when time is short. Progress is printed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-gpu}"
shift || true
bin="$build/bench/multigpu/bench_parallel"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: $bin not found; build it first: ninja -C $build bench_parallel" >&2
  exit 2
fi
card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' || true)"
n="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l || echo 0)"
stem="$root/bench/results/multigpu-${card:-unknown}-x${n}-$(date -u +%Y%m%d-%H%M)"
# Host memory bandwidth beside the numbers: one pinned read of the expert is in the JSON
# (host_load_s); the per-step host-read GB/s summed over cards comes from the pool.
"$bin" --json "$stem.json" --md "$stem.md" "$@"
[[ -f "$stem.json" ]] || { echo "run.sh: no results (skipped?)"; exit 0; }
echo "run.sh: results in $stem.json and $stem.md"
cat "$stem.md"
