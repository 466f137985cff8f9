#!/usr/bin/env bash
# The device calls of issue 13 item 5 (one warm machine, consecutive calls; each call at most
# 600 s; carry bench/peers/vendor in every call that runs a peer):
#   bench/peers/gpu-call.sh preflight          both peers on wand-make-model's tiny-i2v, in the
#                                              foreground (about 1-2 min; needs build-gpu)
#   bench/peers/gpu-call.sh start ARGS...      run-peers.sh ARGS... in the background (setsid),
#                                              e.g. --model /tmp/wand-e2e/models/i2v-A14B --steps 4
#                                              --wand-summary /tmp/wand-e2e/summary.json
#   bench/peers/gpu-call.sh wait N             waits up to N s for it, copies the results to $OUT
#   bench/peers/gpu-call.sh collect            copies what is there now to $OUT (no wait)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
res=${PEERS_RESULTS:-/tmp/wand-peers}
log=/tmp/wand-peers.log

collect() {  # results dir [name] -> $OUT: the summary, and one archive of the rest (no videos, no model
  # links): two files, so that a call that also collects bench/e2e stays within 8 files
  local r=$1 n=${2:-peers}
  cp "$r/summary.md" "$OUT/$n-summary.md" 2>/dev/null
  cp "$log" "$r/run-peers.log" 2>/dev/null
  tar czf "$OUT/$n.tgz" -C "$r" --exclude='*.mp4' --exclude=tiny-model --exclude=official-ckpt \
    --exclude=tokenizer . 2>/dev/null
}

case "${1:-}" in
  preflight)
    shift
    bash bench/peers/run-peers.sh --tiny --results /tmp/wand-peers-tiny "$@" 2>&1 | tee /tmp/wand-peers-tiny.log
    rc=${PIPESTATUS[0]}
    log=/tmp/wand-peers-tiny.log collect /tmp/wand-peers-tiny peers-preflight
    exit $rc ;;
  start)
    shift
    [ -d bench/peers/vendor/site ] || { echo "peers: bench/peers/vendor is missing (carry it)"; exit 2; }
    rm -rf "$res"
    mkdir -p "$res"
    setsid nohup bash bench/peers/run-peers.sh --results "$res" "$@" > "$log" 2>&1 < /dev/null &
    sleep 20
    tail -15 "$log" ;;
  wait)
    for _ in $(seq "${2:-540}"); do [ -f "$res/done" ] && break; sleep 1; done
    [ -f "$res/done" ] || echo "peers: still running after ${2:-540} s"
    collect "$res"
    tail -25 "$res/status.txt" 2>/dev/null
    [ -f "$res/done" ] && cat "$res/summary.md" 2>/dev/null ;;
  collect)
    collect "$res"
    tail -25 "$res/status.txt" 2>/dev/null ;;
  *)
    echo "usage: bench/peers/gpu-call.sh preflight | start ARGS... | wait N | collect" >&2
    exit 2 ;;
esac
