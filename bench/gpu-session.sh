#!/usr/bin/env bash
# The GPU-machine measurements of issues 6-8 as stages, so that a few device calls run all
# of them (each call is at most 10 minutes; the machine stays warm 30 s between calls).
#
#   bench/gpu-session.sh build tests prepare-bg wait-prepare     # call 1
#   bench/gpu-session.sh c-bg ab                                 # call 2: (c) on GPU 1 meanwhile
#   bench/gpu-session.sh wait-c multigpu collect                 # call 3
#
# Stages:
#   build         scripts/gpu-build.sh (CUDA configuration, golden cases from .golden/)
#   tests         ctest -L gpu (the GPU tests, the NCCL ones included)
#   prepare-bg    writes the bf16 A14B (+ umT5) of bench/exec in the background (setsid)
#   wait-prepare  waits for it
#   ab            bench/exec/run.sh --only ab on GPU 0: (a) resident vs (b) 24 GiB streamed
#   c-bg          bench/exec/run.sh --only c on the LAST GPU in the background: the whole
#                 40-step 480p job under 24 GiB VRAM + 32 GiB host (umT5, idle expert from disk)
#   wait-c        waits for it
#   multigpu      bench/multigpu/run.sh (every strategy on 1..N GPUs, 23 GiB per card)
#   attn          bench_dit_block: the fused block and the self-attention alone under each
#                 SDPA kernel family (auto, cudnn, flash, efficient), embed / head per forward
#   profile       bench/dit/profile.sh: Nsight Compute kernel times of one fused block, grouped
#   collect       copies today's bench/results files and the logs to $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
# Logs and results gather in $out; `collect` packs them into ONE archive in $OUT (the device
# tool brings back at most 8 files).
out=/tmp/wand-gpu-out
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# The golden set travels with the checkout (tests/data/golden).
ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
last=$((ngpu > 0 ? ngpu - 1 : 0))
log() { echo "[gpu-session $(date -u +%H:%M:%S)] $*"; }

wait_for() {  # pattern, log file
  while pgrep -f "$1" > /dev/null; do sleep 5; done
  log "done: $1"; tail -15 "$2"
}

for stage in "$@"; do
  log "stage $stage"
  case "$stage" in
    build)
      if ! (time scripts/gpu-build.sh) > "$out/build.log" 2>&1; then
        grep -E "error|Error" "$out/build.log" | head -40; tail -20 "$out/build.log"; exit 1
      fi
      tail -3 "$out/build.log" ;;
    tests)
      ctest --test-dir build-gpu -L gpu --output-on-failure -j1 > "$out/gpu-tests.log" 2>&1
      grep -E "tests passed|Failed|\*\*\*|\[ fused \]|rel" "$out/gpu-tests.log" | tail -40 ;;
    prepare-bg)
      setsid nohup bash bench/exec/run.sh --prepare-only > /tmp/wand-prepare.log 2>&1 < /dev/null &
      sleep 2 ;;
    wait-prepare) wait_for "run.sh --prepare-only" /tmp/wand-prepare.log ;;
    ab) CUDA_VISIBLE_DEVICES=0 bash bench/exec/run.sh --only ab 2>&1 | tee "$out/ab.log" | tail -40 ;;
    c-bg)
      CUDA_VISIBLE_DEVICES=$last setsid nohup bash bench/exec/run.sh --only c > /tmp/wand-c.log 2>&1 < /dev/null &
      sleep 2 ;;
    wait-c) wait_for "run.sh --only c" /tmp/wand-c.log; cp /tmp/wand-c.log "$out/c.log" ;;
    multigpu) bash bench/multigpu/run.sh build-gpu 2>&1 | tee "$out/multigpu.log" | tail -40 ;;
    attn)
      CUDA_VISIBLE_DEVICES=0 build-gpu/bench/dit/bench_dit_block --tokens 32760,75600 --iters 5 --warmup 2 \
        --fused 1 --attn auto,cudnn,flash,efficient --json "$out/attn.json" 2>&1 | tee "$out/attn.log" | tail -30 ;;
    profile)
      CUDA_VISIBLE_DEVICES=0 bash bench/dit/profile.sh build-gpu "$out/profile" 32760 75600 > "$out/profile.log" 2>&1
      grep -E "^\| (attention|gemm|fused|other|reductions)|Sum of kernel" "$out/profile.log" ;;
    collect)
      cp bench/results/*"$(date -u +%Y%m%d)"* "$out/" 2>/dev/null
      cp /tmp/wand-prepare.log /tmp/wand-c.log "$out/" 2>/dev/null
      ls -la "$out"
      if [[ -n "${OUT:-}" ]]; then tar czf "$OUT/gpu-session-$(date -u +%H%M%S).tgz" -C "$out" . && ls -la "$OUT"; fi ;;
    *) echo "gpu-session: unknown stage $stage" >&2; exit 2 ;;
  esac
done
