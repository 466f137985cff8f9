#!/usr/bin/env bash
# Kernel-level profile of one fused A14B DiT block on the GPU machine (issue 6: "where a target
# is missed, the note says what bounds it, measured"). Nsight Compute times every kernel of
# bench_dit_block (warm-up + timed iterations, --clock-control none so the clocks are the
# ones a normal run gets) and profile_summary.py groups them: attention (SDPA), GEMMs, fused
# elementwise kernels, other elementwise, per block.
#
#   bench/dit/profile.sh BUILD_DIR OUT_DIR [tokens ...]     # default 32760 75600
# Writes OUT_DIR/ncu-<tokens>.csv and OUT_DIR/profile-<tokens>.md (also printed).
set -euo pipefail
build="${1:?build dir}"; out="${2:?out dir}"; shift 2
sizes=("$@"); [[ ${#sizes[@]} -gt 0 ]] || sizes=(32760 75600)
here="$(cd "$(dirname "$0")" && pwd)"
ncu_bin="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || true)"
[[ -n "$ncu_bin" ]] || { echo "profile.sh: ncu not found" >&2; exit 2; }
mkdir -p "$out"
py=python3; [[ -x /opt/torch/.venv/bin/python3 ]] && py=/opt/torch/.venv/bin/python3
for S in "${sizes[@]}"; do
  # 1 warm-up + 2 timed block calls, fused kernels, LibTorch's default attention.
  "$ncu_bin" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
    "$build/bench/dit/bench_dit_block" --tokens "$S" --iters 2 --warmup 1 --fused 1 --attn-probe 0 \
    > "$out/ncu-$S.raw" 2> "$out/ncu-$S.err" || { echo "profile.sh: ncu failed for $S"; tail -5 "$out/ncu-$S.err"; continue; }
  grep -E '^"' "$out/ncu-$S.raw" > "$out/ncu-$S.csv" || true
  "$py" "$here/profile_summary.py" "$out/ncu-$S.csv" --blocks 3 --tokens "$S" | tee "$out/profile-$S.md"
done
