#!/usr/bin/env bash
# fp8 weights on the GPU machine (issue 17 item 2), NOT run yet: the lead runs it there.
# On the bench/exec synthetic A14B (bf16, release layout, both experts over one set of
# shards; written by `bench/exec/run.sh --prepare-only` when missing), at 1280x720x81:
#   1. bf16 baseline : bench_streamed_step --weights auto       (a) resident bf16, (b) streamed bf16
#   2. fp8 per row   : bench_streamed_step --weights fp8        (a) resident bf16, (b) streamed fp8
#   3. fp8 per tensor: bench_streamed_step --weights fp8-tensor   (ComfyUI's scale granularity)
# (a) runs in every case: it is the bf16 reference of the error.
# Each run is its own process, so host VmHWM (host_peak_rss_bytes) is per case: the pinned host
# tier is sized to the store's bytes (about 14 GB an expert in fp8, 28 GB in bf16; both experts
# are registered and read). Reported per case in one JSON + a markdown table:
#   host VmHWM, host tier / weights bytes, (b)/(a) forward and CFG-step ratio, the device peak,
#   and (b)'s forward error against (a)'s bf16 forward: relative L2, PSNR, max |diff|.
# The first fp8 run repacks the expert once into the spool (both fp8 runs: ~14 GB each, minutes
# of CPU quantization; it is timed in the log line "(b) weight store ... in N s").
#
#   bench/exec/fp8.sh [--build build-gpu] [--model /tmp/wand-bench-a14b] [--only bf16|fp8|fp8-tensor]
# Output: bench/results/fp8-<card>-<date>.{json,md}, logs in /tmp/wand-fp8-*.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build-gpu
model=${WAND_BENCH_MODEL:-/tmp/wand-bench-a14b}
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
bin=$build/bench/exec/bench_streamed_step
[ -x "$bin" ] || { echo "missing $bin (scripts/gpu-build.sh)" >&2; exit 1; }
[ -f "$model/high_noise_model/config.json" ] || bench/exec/run.sh --build "$build" --model "$model" --prepare-only
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
day=$(date -u +%Y%m%d-%H%M)
work=/tmp/wand-fp8-$day
mkdir -p "$work" bench/results
for w in auto fp8 fp8-tensor; do
  want=${only/bf16/auto}
  [ -z "$want" ] || [ "$want" = "$w" ] || continue
  echo "[fp8.sh $(date -u +%H:%M:%S)] weights=$w"
  "$bin" --model "$model" --sizes 1280x720 --frames 81 --repeat 1 --weights "$w" \
         --spool /tmp/wand-bench-spool --json "$work/$w.json" 2>&1 | tee "/tmp/wand-fp8-$w.log" | grep -v '^ ' || true
done
python3 - "$work" "bench/results/fp8-$card-$day" "$card" "$*" <<'PY'
import json, sys, os, glob, datetime
work, stem, card, args = sys.argv[1:5]
cases = {}
for f in sorted(glob.glob(os.path.join(work, "*.json"))):
    cases[os.path.basename(f)[:-5]] = json.load(open(f))
json.dump(cases, open(stem + ".json", "w"), indent=1)
gib = lambda b: "%.2f GiB" % (b / 2**30) if isinstance(b, (int, float)) else "-"
rows = ["| weights | host VmHWM | host weights | (a) fwd s | (b) fwd s | (b)/(a) fwd | (b)/(a) CFG step | device peak (b) | rel L2 vs bf16 | PSNR dB |",
        "|---|---|---|---|---|---|---|---|---|---|"]
for w, j in cases.items():
    for r in j.get("results", []):
        e = r.get("streamed_vs_resident_error") or {}
        rows.append("| %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %s | %s | %s |" % (
            w, gib(j.get("host_peak_rss_bytes")), gib(j.get("host_weights_bytes")),
            r["resident"].get("forward_s", float("nan")), r["streamed"]["forward_s"],
            r.get("streamed_over_resident_forward", float("nan")), r.get("streamed_over_resident_cfg_step", float("nan")),
            gib(r["streamed"]["peak_device_bytes"]),
            "%.5f" % e["rel_l2"] if "rel_l2" in e else "-", "%.2f" % e["psnr_db"] if "psnr_db" in e else "-"))
open(stem + ".md", "w").write(
    "# fp8 weights, t2v-A14B expert (synthetic bf16), 1280x720x81, %s\n\n%s UTC, `bench/exec/fp8.sh %s`\n\n%s\n\n"
    "(a): all blocks resident in bf16; (b): streamed from pinned host memory under a 23 GiB budget, "
    "blocks stored as `weights` and dequantized on the card. The error is (b)'s forward against (a)'s "
    "(random weights, so it measures the quantization, not image quality).\n"
    % (card, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), args, "\n".join(rows)))
print(open(stem + ".md").read())
PY
