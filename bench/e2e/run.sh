#!/usr/bin/env bash
# Issue 13 item 4: the product's acceptance run, through wanctl only. A daemon built from this
# tree serves full-size bf16 A14B models (random weights in the release layout, from
# wand-make-model); jobs are submitted with `wanctl generate`, and the card and the daemon are
# sampled from outside while they run:
#   - the card's true use: nvidia-smi memory.used at 10 Hz (not the allocator's view);
#   - the daemon's host memory: VmRSS / VmHWM / RssAnon / RssFile / RssShmem from /proc at
#     10 Hz, and the largest mappings (smaps) at the highest VmRSS seen (peak-smaps.txt);
#   - the phase of the job: the daemon's own log ("job phase text|encode|steps|decode"),
#     joined to the samples by time (bench/e2e/phases.py).
# Two daemon configurations run the same jobs one after the other on the same card:
#   streamed  configs/examples/1x24gb.json as shipped (23 GiB card budget, 40 GiB host, the
#             idle expert from disk), only its paths moved under the work dir;
#   resident  bench/e2e/resident-80gb.json: the same daemon with everything resident on the
#             80 GB card (one expert's blocks in a 30 GiB device tier, both experts in host
#             memory, no tiling), the baseline of the whole-job time ratio.
#
#   bench/e2e/run.sh [--build build-gpu] [--work /tmp/wand-e2e] [--steps 4] [--frames 81]
#                    [--jobs "i2v-A14B:1280*720 i2v-A14B:832*480"] [--configs "streamed resident"]
#                    [--models DIR] [--prepare-only]
# A config is "streamed", "resident" or NAME=FILE (any daemon config: e.g. a CPU dry run of the
# script itself with tiny models: --jobs tiny-i2v:64*48 --frames 5 --configs cpu=my.json).
# Results: $work/summary.json and $work/summary.md (phases.py), the logs, the videos.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=build-gpu
work=/tmp/wand-e2e
steps=4
frames=81
jobs="i2v-A14B:1280*720 i2v-A14B:832*480"
configs="streamed resident"
prepare_only=0
models=
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --prepare-only) prepare_only=1; shift ;;
    *) echo "e2e: unknown argument $1" >&2; exit 2 ;;
  esac
done
py=$(command -v python3)
[ -x /opt/torch/.venv/bin/python3 ] && py=/opt/torch/.venv/bin/python3
wand="$root/$build/daemon/wand"
wanctl="$root/$build/ctl/wanctl"
maker="$root/$build/model/wand-make-model"
models=${models:-$work/models}
mkdir -p "$work" "$models"
log() { echo "[e2e $(date -u +%H:%M:%S)] $*"; }

# ---- models: one per preset named in --jobs, written once (bf16, experts sharing shards)
for preset in $(for j in $jobs; do echo "${j%%:*}"; done | sort -u); do
  m="$models/$preset"
  if [ ! -f "$m/.complete" ]; then
    log "writing $preset to $m"
    rm -rf "$m"
    case "$preset" in
      tiny-*) "$maker" --preset "$preset" --seed 1 --out "$m" || exit 1 ;;
      *) "$maker" --preset "$preset" --dtype bf16 --share-experts --seed 1 --out "$m" || exit 1 ;;
    esac
    touch "$m/.complete"
  fi
done
[ "$prepare_only" = 1 ] && exit 0

# ---- the input image: a 1280x720 PPM gradient (decoded without libav)
img="$work/input.ppm"
[ -f "$img" ] || "$py" - "$img" <<'PY'
import sys
w, h = 1280, 720
px = bytearray()
for y in range(h):
    for x in range(w):
        px += bytes(((x * 255) // w, (y * 255) // h, ((x + y) * 255) // (w + h)))
open(sys.argv[1], "wb").write(b"P6\n%d %d\n255\n" % (w, h) + bytes(px))
PY

# ---- one configuration: write its config, start the daemon and the samplers, run the jobs
run_config() {
  local name=$1 src=$2
  local dir="$work/$name"
  rm -rf "$dir/state" "$dir/spool"
  mkdir -p "$dir/state" "$dir/out"
  "$py" - "$src" "$dir" "$models" $(for j in $jobs; do echo "${j%%:*}"; done | sort -u) <<'PY'
import json, sys
src, d, models = sys.argv[1:4]
c = json.load(open(src))
c["socket"] = {"path": f"{d}/wand.sock"}
c["state_dir"] = f"{d}/state"
c.pop("admin_group", None)
c["models"] = {p: f"{models}/{p}" for p in sys.argv[4:]}
if "disk" in c.get("memory", {}):
    # The disk tier is reserved in full at start: the GPU machine's 64 GB disk holds the model,
    # so the spool is 8 GiB there (jobs' spilled state only; the weights are read from the model).
    c["memory"]["disk"] = {"dir": f"{d}/spool", "bytes": "8GiB"}
json.dump(c, open(f"{d}/wand.json", "w"), indent=1)
PY
  log "$name: daemon with $dir/wand.json"
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "$wand" --config "$dir/wand.json" > "$dir/daemon.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    "$wanctl" --socket "$dir/wand.sock" models > /dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { log "$name: daemon exited"; tail -20 "$dir/daemon.log"; return 1; }
    sleep 0.2
  done
  local smi=
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -i 0 -lms 100 > "$dir/smi.csv" &
    smi=$!
  else
    : > "$dir/smi.csv"  # no GPU: host figures only
  fi
  ( top=0
    while kill -0 $pid 2>/dev/null; do
      line=$(grep -E 'VmRSS|VmHWM|RssAnon|RssFile|RssShmem' /proc/$pid/status 2>/dev/null | tr -s ' \n' ' ')
      printf '%s %s\n' "$(date +%s.%N)" "$line"
      rss_kb=$(echo "$line" | sed -n 's/.*VmRSS: \([0-9]*\) kB.*/\1/p')
      # The largest mappings at each new VmRSS high (256 MiB steps): what the host peak is made of.
      if [ -n "$rss_kb" ] && [ "$rss_kb" -gt $((top + 262144)) ]; then
        top=$rss_kb
        { echo "VmRSS $rss_kb kB at $(date +%s.%N)"
          awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; if (name=="") name="[anon]"} /^Rss:/{rss[name]+=$2}
               END{for (n in rss) printf "%12d kB %s\n", rss[n], n}' /proc/$pid/smaps 2>/dev/null | sort -rn | head -25
        } > "$dir/peak-smaps.txt.tmp" && mv "$dir/peak-smaps.txt.tmp" "$dir/peak-smaps.txt"
      fi
      sleep 0.1
    done ) > "$dir/rss.txt" &
  local rss=$!
  : > "$dir/jobs.txt"
  for j in $jobs; do
    local model=${j%%:*} size=${j#*:} t0 t1 rc tag
    tag="$model-${size/\*/x}"
    local args=(--model "$model" --prompt "a red kite over the sea at dawn" --size "$size" --frames "$frames"
                --steps "$steps" --seed 42 --no-progress -o "$dir/out/$tag.out")
    case "$model" in i2v-*) args+=(--image "$img") ;; esac
    log "$name: job $tag"
    t0=$(date +%s.%N)
    "$wanctl" --socket "$dir/wand.sock" generate "${args[@]}" > "$dir/$tag.wanctl.txt" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "$tag $t0 $t1 $rc" >> "$dir/jobs.txt"
    log "$name: job $tag rc=$rc $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
    [ $rc -eq 0 ] || tail -5 "$dir/$tag.wanctl.txt"
  done
  grep -E 'VmHWM' /proc/$pid/status > "$dir/vmhwm.txt" 2>/dev/null
  "$wanctl" --socket "$dir/wand.sock" tiers --json > "$dir/tiers.json" 2>&1
  "$wanctl" --socket "$dir/wand.sock" shutdown > /dev/null 2>&1
  for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
  kill $pid 2>/dev/null
  kill $smi $rss 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir/spool"  # the disk is small: the next configuration reserves its own
}

names=()
for cfg in $configs; do
  case "$cfg" in
    streamed) run_config streamed "$root/configs/examples/1x24gb.json" ;;
    resident) run_config resident "$root/bench/e2e/resident-80gb.json" ;;
    *=*) run_config "${cfg%%=*}" "${cfg#*=}" ;;
    *) echo "e2e: unknown config $cfg" >&2; exit 2 ;;
  esac
  names+=("${cfg%%=*}")
done
"$py" "$root/bench/e2e/phases.py" "$work" "${names[@]}"
