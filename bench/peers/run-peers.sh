#!/usr/bin/env bash
# Issue 13 item 5: the two peers on the GPU machine, on the job of bench/e2e (i2v-A14B,
# full-size bf16 random weights in the release layout), one after the other on the same card:
#   official   Wan2.2 generate.py --offload_model True --convert_model_dtype --t5_cpu (wan_official.py)
#   diffusers  WanImageToVideoPipeline with group offloading (diffusers_i2v.py; --diffusers-offload)
# Each peer runs as its own process under /usr/bin/time -v (when present), with nvidia-smi
# sampling the card's memory.used at 10 Hz and a loop sampling the process's VmRSS / VmHWM at
# 10 Hz; the launchers mark each phase and step (events.jsonl). summarize.py joins them into
# RESULTS/summary.json and RESULTS/summary.md (with --wand-summary, wand's e2e row beside them).
#
#   bench/peers/run-peers.sh --model DIR [--results /tmp/wand-peers] [--steps 4] [--size 1280*720]
#       [--frames 81] [--peers "official diffusers"] [--diffusers-offload group|model|sequential|none]
#       [--wand-summary /tmp/wand-e2e/summary.json] [--wand-config streamed] [--peer-timeout 1500]
#   bench/peers/run-peers.sh --tiny [--build build-gpu] [--results /tmp/wand-peers-tiny]
#       the preflight: wand-make-model's tiny-i2v (shared experts), 832*480, 5 frames, 2 steps;
#       both peers' whole code paths in about a minute
#
# DIR is a wand-make-model directory (bench/e2e/run.sh writes /tmp/wand-e2e/models/i2v-A14B);
# nothing is written into it. A peer that fails or cannot run does not stop the other: its
# error line and traceback tail are printed and go into the summary. Progress lines go to
# RESULTS/status.txt; RESULTS/done holds the exit status when everything has finished, so the
# script can run in the background (setsid; bench/peers/gpu-call.sh) and be polled.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
root=$PWD
model=
results=
steps=
size=
frames=
peers="official diffusers"
doffload=group
wand_summary=
wand_config=streamed
peer_timeout=1500
tiny=0
build=build-gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --diffusers-offload) doffload=$2; shift 2 ;;
    --wand-summary) wand_summary=$2; shift 2 ;;
    --wand-config) wand_config=$2; shift 2 ;;
    --peer-timeout) peer_timeout=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --build) build=$2; shift 2 ;;
    *) echo "run-peers: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$tiny" = 1 ]; then
  results=${results:-/tmp/wand-peers-tiny}; steps=${steps:-2}; size=${size:-832*480}; frames=${frames:-5}
else
  results=${results:-/tmp/wand-peers}; steps=${steps:-4}; size=${size:-1280*720}; frames=${frames:-81}
fi
py=$(command -v python3)
[ -x /opt/torch/.venv/bin/python3 ] && py=/opt/torch/.venv/bin/python3
py=${PEERS_PYTHON:-$py}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
  TOKENIZERS_PARALLELISM=false DIFFUSERS_VERBOSITY=${DIFFUSERS_VERBOSITY:-warning}
mkdir -p "$results"
rm -f "$results/done"
: > "$results/status.txt"
status() { echo "[peers $(date -u +%H:%M:%S)] $*" | tee -a "$results/status.txt"; }
finish() { echo "$1" > "$results/done"; status "done rc=$1"; exit "$1"; }

have_smi=0
command -v nvidia-smi > /dev/null && have_smi=1
if [ "$have_smi" = 1 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0 > "$results/machine.txt" 2>&1
else
  echo "no nvidia-smi" > "$results/machine.txt"
fi
status "card: $(cat "$results/machine.txt"); python: $py; steps $steps, size $size, frames $frames; peers: $peers"

if [ "$tiny" = 1 ] && [ -z "$model" ]; then
  model=$results/tiny-model
  if [ ! -f "$model/.complete" ]; then
    maker="$root/$build/model/wand-make-model"
    [ -x "$maker" ] || { status "no $maker: build wand first (scripts/gpu-build.sh)"; finish 2; }
    rm -rf "$model"
    "$maker" --preset tiny-i2v --seed 1 --share-experts --out "$model" > "$results/make-model.log" 2>&1 \
      || { status "wand-make-model failed:"; tail -5 "$results/make-model.log"; finish 2; }
    touch "$model/.complete"
  fi
fi
[ -n "$model" ] && [ -d "$model" ] || { status "no model directory (--model DIR): '$model'"; finish 2; }

status "prepare (tokenizer, official-ckpt links, input image, modules)"
"$py" bench/peers/prepare.py --model "$model" --work "$results" --size "$size" > "$results/prepare.log" 2>&1
prc=$?
grep '^prepare:' "$results/prepare.log" | sed 's/^/  /' | tee -a "$results/status.txt"
if [ ! -f "$results/prepare.json" ]; then
  status "prepare.py failed (rc $prc) before writing prepare.json:"; tail -20 "$results/prepare.log"; finish 2
fi
w=${size%\**}; h=${size#*\*}
img="$results/input-${w}x${h}.png"

# The peer's required modules, as prepare.py found them ("" when all are there).
missing_for() {
  "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join(r["modules"].get(sys.argv[2],{}).get("missing",[])))' \
    "$results/prepare.json" "$1" 2>/dev/null
}

card_used_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1; }

wait_card_idle() {  # the previous peer's memory must be gone before the next one is sampled
  pgrep -x wand > /dev/null && status "warning: a wand daemon is running beside the peers (pid $(pgrep -x wand | tr '\n' ' '))"
  [ "$have_smi" = 1 ] || return 0
  for _ in $(seq 120); do
    u=$(card_used_mib); [ -n "$u" ] && [ "$u" -lt 2048 ] && return 0
    sleep 0.5
  done
  status "warning: the card still shows $(card_used_mib) MiB used before the next peer"
}

run_peer() {
  local peer=$1 dir="$results/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  local cmd
  case "$peer" in
    official)
      cmd=("$py" bench/peers/wan_official.py --ckpt "$results/official-ckpt" --out "$dir" --steps "$steps"
           --size "$size" --frames "$frames" --image "$img") ;;
    diffusers)
      cmd=("$py" bench/peers/diffusers_i2v.py --tokenizer "$results/tokenizer" --out "$dir" --offload "$doffload"
           --steps "$steps" --size "$size" --frames "$frames" --image "$img") ;;
    *) status "unknown peer $peer"; return 1 ;;
  esac
  [ "$tiny" = 1 ] && cmd+=(--tiny)
  local miss; miss=$(missing_for "$peer")
  if [ -n "$miss" ]; then
    status "$peer cannot run on this machine: missing $miss (no pure-Python copy vendored)"
    printf '{"peer": "%s", "status": "not run: missing %s"}\n' "$peer" "$miss" > "$dir/result.json"
    return 1
  fi
  wait_card_idle
  local smi=
  if [ "$have_smi" = 1 ]; then
    nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -i 0 -lms 100 > "$dir/smi.csv" 2>/dev/null &
    smi=$!
    sleep 1  # idle samples before the start
  fi
  local timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -v -o "$dir/time.txt")
  [ ${#timer[@]} -eq 0 ] && status "no /usr/bin/time: host peak from the VmHWM samples and ru_maxrss only"
  status "$peer: ${cmd[*]}"
  local t0 t1 rc pid
  t0=$(date +%s.%N)
  timeout --kill-after=30 "$peer_timeout" "${timer[@]}" "${cmd[@]}" > "$dir/log.txt" 2>&1 &
  pid=$!
  ( while [ ! -s "$dir/pid" ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
    ppid=$(cat "$dir/pid" 2>/dev/null)
    while [ -n "$ppid" ] && kill -0 "$ppid" 2>/dev/null; do
      printf '%s %s\n' "$(date +%s.%N)" "$(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' /proc/$ppid/status 2>/dev/null | tr -s ' \n' ' ')"
      sleep 0.1
    done ) > "$dir/rss.txt" &
  local rss=$!
  wait $pid
  rc=$?
  t1=$(date +%s.%N)
  echo "$t0 $t1 $rc" > "$dir/run.txt"
  sleep 1  # the card's release after exit
  [ -n "$smi" ] && kill $smi 2>/dev/null
  kill $rss 2>/dev/null
  wait $rss $smi 2>/dev/null
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  if [ $rc -eq 0 ]; then
    status "$peer: ok in $secs s"
  else
    local why=
    [ $rc -eq 124 ] && why=" (ran past --peer-timeout $peer_timeout s)"
    [ $rc -eq 137 ] && why=" (killed: SIGKILL; the OOM killer? see host peak)"
    grep -q "Command terminated by signal 9" "$dir/time.txt" 2>/dev/null && why=" (killed by signal 9: the OOM killer?)"
    local err
    err=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error",""))' "$dir/result.json" 2>/dev/null)
    status "$peer: FAILED rc=$rc after $secs s$why: ${err:-$(tail -1 "$dir/log.txt")}"
    status "$peer: traceback / log tail:"
    tail -25 "$dir/log.txt" | sed 's/^/    /' | tee -a "$results/status.txt"
  fi
  return $rc
}

overall=0
for peer in $peers; do
  run_peer "$peer" || overall=1
done
status "summary"
wand_args=()
[ -n "$wand_summary" ] && wand_args=(--wand "$wand_summary" --wand-config "$wand_config" --wand-job "i2v-A14B-${w}x${h}")
"$py" bench/peers/summarize.py "$results" --steps "$steps" "${wand_args[@]}" > "$results/summarize.log" 2>&1 \
  || { status "summarize.py failed:"; tail -20 "$results/summarize.log"; overall=1; }
cat "$results/summary.md" 2>/dev/null
finish $overall
