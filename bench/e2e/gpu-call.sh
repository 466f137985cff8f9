#!/usr/bin/env bash
# The device calls of issue 13's acceptance run (one machine, consecutive calls):
#   bench/e2e/gpu-call.sh start   build, then in the background (setsid): models, e2e jobs;
#                                 meanwhile the GPU tests (ctest -L gpu)
#   bench/e2e/gpu-call.sh wait N  waits up to N seconds for the background run, copies results to $OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
st=/tmp/wand-e2e-state
mkdir -p "$st" "${OUT:-/tmp/out}"
OUT=${OUT:-/tmp/out}
case "$1" in
  start)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/machine.txt"
    scripts/gpu-build.sh > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    setsid bash -c "bench/e2e/run.sh --build build-gpu --work /tmp/wand-e2e --steps ${E2E_STEPS:-4} \
      --jobs '${E2E_JOBS:-i2v-A14B:1280*720 i2v-A14B:832*480}' --configs '${E2E_CONFIGS:-streamed resident}' \
      > $st/e2e.log 2>&1; echo \$? > $st/e2e.rc" < /dev/null > /dev/null 2>&1 &
    timeout "${GPU_TEST_S:-300}" ctest --test-dir build-gpu -L gpu --output-on-failure -j1 > "$OUT/gpu-tests.log" 2>&1
    echo "gpu tests rc=$?"; grep -E "tests passed|tests failed|\*\*\*Failed|Timeout" "$OUT/gpu-tests.log" | tail -15
    tail -5 "$st/e2e.log" ;;
  wait)
    for _ in $(seq "${2:-500}"); do [ -f "$st/e2e.rc" ] && break; sleep 1; done
    cp "$st/e2e.log" "$OUT/" 2>/dev/null
    for f in summary.json summary.md; do cp "/tmp/wand-e2e/$f" "$OUT/" 2>/dev/null; done
    tar czf "$OUT/e2e-logs.tgz" -C /tmp/wand-e2e --exclude=models --exclude='*.out' --exclude=spool --exclude=state . 2>/dev/null
    tail -30 "$st/e2e.log"; cat /tmp/wand-e2e/summary.md 2>/dev/null ;;
esac
