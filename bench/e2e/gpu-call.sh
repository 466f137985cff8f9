#!/usr/bin/env bash
# The device calls of issue 13's acceptance run (one machine, consecutive calls):
#   bench/e2e/gpu-call.sh start   build, then in the background (setsid), model by model
#                                 (E2E_MODELS, default "i2v-A14B t2v-A14B"; an entry MODEL=CFG,CFG
#                                 runs only those configs for that model): write the model,
#                                 run its jobs (E2E_SIZES) in each config (E2E_CONFIGS), delete
#                                 it (the 64 GB disk holds one full-size model); meanwhile the
#                                 GPU tests (ctest -L gpu, E2E_TEST_REGEX to pick some, GPU_TEST_S)
#   bench/e2e/gpu-call.sh wait N  waits up to N seconds for the background run, copies results to $OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
# The device tool replaces the carried checkout at every call: a background chain running in
# it would lose its working directory at the next `wait` (the likely cause, not yet confirmed on
# the device, of daemons that died at
# start with "Intel oneMKL FATAL ERROR: Cannot load .../libtorch_cpu.so", MKL's loader failing
# on the removed cwd, while the model maker that ran before the replacement had worked). So
# `start` copies the tree to a private folder and builds and runs everything from there.
src=/tmp/wand-e2e-src
st=/tmp/wand-e2e-state
mkdir -p "$st" "${OUT:-/tmp/out}"
OUT=${OUT:-/tmp/out}
models=${E2E_MODELS:-i2v-A14B t2v-A14B}
case "$1" in
  start)
    rm -rf "$src" && mkdir -p "$src"
    tar -cf - --exclude=./build-gpu --exclude=./build . | tar -xf - -C "$src" && cd "$src" || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/machine.txt"
    t0=$(date +%s)
    scripts/gpu-build.sh > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    echo "build $(( $(date +%s) - t0 )) s"
    chain=""
    for entry in $models; do
      m=${entry%%=*}; cfgs=${E2E_CONFIGS:-streamed resident}
      case "$entry" in *=*) cfgs=${entry#*=}; cfgs=${cfgs//,/ } ;; esac
      jobs=""
      for s in ${E2E_SIZES:-1280*720 832*480}; do jobs="$jobs $m:$s"; done
      chain="$chain bench/e2e/run.sh --build build-gpu --work /tmp/wand-e2e/$m --models /tmp/wand-models \
        --steps ${E2E_STEPS:-4} --jobs '${jobs# }' --configs '$cfgs' > $st/e2e-$m.log 2>&1; \
        echo $m \$? >> $st/e2e.rcs; rm -rf /tmp/wand-models/$m;"
    done
    rm -f "$st/e2e.rc" "$st/e2e.rcs"; touch "$st/started"
    setsid bash -c "$chain touch $st/e2e.rc" < /dev/null > /dev/null 2>&1 &
    ctest_args=(-L gpu)
    [ -n "${E2E_TEST_REGEX:-}" ] && ctest_args+=(-R "$E2E_TEST_REGEX")
    timeout "${GPU_TEST_S:-300}" ctest --test-dir build-gpu "${ctest_args[@]}" --output-on-failure -j1 > "$OUT/gpu-tests.log" 2>&1
    echo "gpu tests rc=$?"; grep -E "tests passed|tests failed|\*\*\*Failed|Timeout" "$OUT/gpu-tests.log" | tail -15
    tail -n 3 $st/e2e-*.log ;;
  wait)
    # A machine left idle for ~30 s is given back and the next call gets a fresh one: then there
    # is nothing to wait for (no build, no models) and this says so at once.
    if [ ! -f "$st/started" ]; then
      echo "gpu-call: no background run on this machine (a fresh machine? run 'start' again)"; exit 3
    fi
    for _ in $(seq "${2:-500}"); do [ -f "$st/e2e.rc" ] && break; sleep 1; done
    cp $st/e2e-*.log "$OUT/" 2>/dev/null; cat $st/e2e.rcs 2>/dev/null
    for entry in $models; do
      m=${entry%%=*}
      for f in summary.json summary.md; do cp "/tmp/wand-e2e/$m/$f" "$OUT/$m-$f" 2>/dev/null; done
    done
    tar czf "$OUT/e2e-logs.tgz" -C /tmp/wand-e2e --exclude='*.out' --exclude=spool --exclude=state . 2>/dev/null
    tail -n 4 $st/e2e-*.log; cat /tmp/wand-e2e/*/summary.md 2>/dev/null ;;
esac
