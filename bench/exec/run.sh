#!/usr/bin/env bash
# Issue 6 item 6 on the GPU machine: the full-size synthetic A14B (random bf16 weights in the
# release layout, both experts over one set of shards) measured for
#   (a) all weights resident, (b) a 24 GiB card (wand budget 23 GiB: everything on the card) with the expert in pinned host memory, per size
#       (832x480, 1280x720, 81 frames; bench_streamed_step, 1 warm-up + 2 timed iterations),
#       plus one block in PyTorch eager on the same card x layers (bench/dit/pytorch_block.py);
#   (c) a whole 40-step 480p t2v job under the same 23 GiB budget and a 32 GiB host budget, umT5 and the
#       idle expert from disk, and (a)'s whole job in the same process (bench_streamed_job).
# Writes bench/results/exec-<card>-<date>.{json,md} (summarize.py: tables, ratios, targets).
#
#   bench/exec/run.sh --prepare-only            # write the model once (~40 GB; start it early)
#   bench/exec/run.sh [--only ab|c|eager] [--build DIR] [--model DIR] [--no-pytorch] [-- bench_streamed_step args]
#   bench/exec/run.sh BUILD_DIR                 # old form: everything, build dir first
#   --fresh: forget the stages of earlier calls (their JSONs in <model>.work/)
#   bench/exec/run.sh --tiny --build build-x --model /tmp/tiny   # CPU check of this script (tiny-t2v, meaningless numbers)
# (eager: bench/dit/pytorch_forward.py, the 40 blocks of one expert in PyTorch eager.)
# Each stage prints its wall time. One GPU call is 10 minutes at most: with the model written,
# `--only ab` and `--only c` each stay well under 9 (run them as two calls if one is tight).
# A concurrent prepare (lock file next to the model) is waited for, never repeated.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/build-gpu"
model="${WAND_BENCH_MODEL:-/tmp/wand-bench-a14b}"
only=all
prepare_only=0
pytorch=1
tiny=()
preset=t2v-A14B
fresh=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prepare-only) prepare_only=1 ;;
    --only) only="$2"; shift ;;
    --build) build="$2"; shift ;;
    --model) model="$2"; shift ;;
    --no-pytorch) pytorch=0 ;;
    --fresh) fresh=1 ;;
    --tiny) tiny=(--tiny); preset=tiny-t2v; pytorch=0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) build="$1" ;;
  esac
  shift
done
case "$only" in all|ab|c|eager) ;; *) echo "run.sh: --only ab|c|eager" >&2; exit 2 ;; esac
now() { date +%s.%N; }
took() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
t_start=$(now)

# ---- prepare: wand-make-model, once (flock: a second caller waits for the first).
prepare() {
  local maker="$build/model/wand-make-model"
  mkdir -p "$(dirname "$model")"
  exec 9>"$model.lock"
  flock 9
  if [[ -f "$model/.wand-bench-prepared" ]]; then
    echo "run.sh: model ready in $model (written in $(cat "$model/.wand-bench-prepared") s)"
  else
    [[ -x "$maker" ]] || { echo "run.sh: $maker not found; ninja -C $build wand-make-model" >&2; exit 2; }
    local avail need=$((44 * 1000 * 1000 * 1000))
    [[ $preset == t2v-A14B ]] || need=0
    avail=$(df --output=avail -B1 "$(dirname "$model")" | tail -1)
    if [[ "$avail" -lt "$need" ]]; then
      echo "run.sh: $(dirname "$model") has $avail bytes free; the bf16 A14B (28 GB shared experts) + umT5 (11.4 GB) + VAE needs ~$need" >&2
      exit 2
    fi
    rm -rf "$model"
    local t0; t0=$(now)
    echo "run.sh: writing $preset (bf16, --share-experts) to $model ..."
    "$maker" --preset "$preset" --dtype bf16 --share-experts --seed 1 --out "$model"
    sync
    took "$t0" > "$model/.wand-bench-prepared"
    echo "run.sh: model written in $(cat "$model/.wand-bench-prepared") s ($(du -sh "$model" | cut -f1))"
  fi
  flock -u 9
}
prepare
if [[ $prepare_only == 1 ]]; then exit 0; fi

card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' || true)"
card="${card:-unknown}"
[[ ${#tiny[@]} -eq 0 ]] || card="tiny-${card}"
stamp="$(date -u +%Y%m%d-%H%M)"
# Raw JSONs of each stage stay in $work (next to the model) so that separate calls (`--only ab`,
# then `--only c`, then `--only eager`) add up to one summary; a stage overwrites only its own.
work="${WAND_BENCH_WORK:-$model.work}"
[[ $fresh == 0 ]] || rm -rf "$work"
mkdir -p "$work"
ab_json="$work/ab.json"
c_json="$work/c.json"
eager_json="$work/eager.json"
py=${WAND_TORCH_PYTHON:-}
if [[ -z "$py" ]]; then
  if [[ -x /opt/torch/.venv/bin/python3 ]]; then py=/opt/torch/.venv/bin/python3; else py=python3; fi
fi

# ---- (a) / (b): bench_streamed_step, then PyTorch eager on block 0 of the same expert.
if [[ $only == all || $only == ab ]]; then
  t0=$(now)
  bin="$build/bench/exec/bench_streamed_step"
  [[ -x "$bin" ]] || { echo "run.sh: $bin not found; ninja -C $build bench_streamed_step" >&2; exit 2; }
  rm -f "$ab_json"
  "$bin" --model "$model" --repeat 2 --json "$ab_json" "${tiny[@]}" "${extra[@]}" ||
    echo "run.sh: bench_streamed_step failed (rc $?)"
  echo "run.sh: (a)/(b) took $(took "$t0") s"
  blockbin="$build/bench/dit/bench_dit_block"
  if [[ -f "$ab_json" && $pytorch == 1 && -x "$blockbin" ]]; then
    t0=$(now)
    expert="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$ab_json")"
    layers="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"])' "$ab_json")"
    "$blockbin" --model-dir "$expert" --weights-out "$work/block0.safetensors" --tokens 32760,75600 \
      --iters 2 --warmup 1 --json "$work/cpp_block.json" > /dev/null || echo "run.sh: bench_dit_block failed"
    "$py" "$root/bench/dit/pytorch_block.py" --weights "$work/block0.safetensors" --tokens 32760,75600 \
      --iters 2 --warmup 1 --json "$work/py_block.json" || echo "run.sh: pytorch_block.py failed"
    if [[ -f "$work/py_block.json" ]]; then
      python3 - "$ab_json" "$work/py_block.json" "$layers" "$work/cpp_block.json" <<'PY'
import json, os, sys
out, py, layers = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
cpp = json.load(open(sys.argv[4])) if os.path.exists(sys.argv[4]) else None
d = json.load(open(out))
by_tokens = {r["tokens"]: r for r in py["results"]}
d["pytorch_eager"] = {"device": py.get("device"), "torch": py.get("torch"), "layers": layers,
                      "note": "one block in PyTorch eager (bench/dit/pytorch_block.py, same weights) x layers",
                      "cpp_block": cpp}
for r in d["results"]:
    p = by_tokens.get(r["tokens"])
    if p:
        ms = p.get("ms") or p.get("median_ms")
        if ms is not None:
            r["pytorch_eager_forward_s"] = ms * layers / 1000.0
json.dump(d, open(out, "w"), indent=1)
PY
    fi
    echo "run.sh: PyTorch eager block took $(took "$t0") s"
  fi
fi

# ---- (c): the whole job. The page cache is dropped (best effort) so disk reads are disk reads
# (the pool reads with O_DIRECT where it can anyway).
if [[ $only == all || $only == c ]]; then
  t0=$(now)
  bin="$build/bench/exec/bench_streamed_job"
  [[ -x "$bin" ]] || { echo "run.sh: $bin not found; ninja -C $build bench_streamed_job" >&2; exit 2; }
  rm -f "$c_json"
  sync
  if [[ ${#tiny[@]} -eq 0 ]]; then
    (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null || echo "run.sh: could not drop the page cache (not root)"
  fi
  gbps=()
  if [[ -f "$ab_json" ]]; then
    g="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("host_load_gbps", ""))' "$ab_json")"
    [[ -n "$g" ]] && gbps=(--disk-gbps "$g")
  fi
  "$bin" --model "$model" --json "$c_json" "${gbps[@]}" "${tiny[@]}" ||
    echo "run.sh: bench_streamed_job failed (rc $?); a partial $c_json is summarised if it was written"
  echo "run.sh: (c) took $(took "$t0") s"
fi

results="${WAND_BENCH_RESULTS:-$root/bench/results}"
mkdir -p "$results"
# ---- PyTorch eager, a whole expert (40 blocks resident, read from the same shards): optional
# stage (`--only eager`, or part of a full run), ~1.5 min on an H100.
if [[ ( $only == all || $only == eager ) && $pytorch == 1 ]]; then
  t0=$(now)
  rm -f "$eager_json"
  "$py" "$root/bench/dit/pytorch_forward.py" --expert "$model/high_noise_model" --tokens 32760,75600 \
    --iters 2 --warmup 1 --json "$eager_json" || echo "run.sh: pytorch_forward.py failed"
  echo "run.sh: PyTorch eager 40-block forward took $(took "$t0") s"
fi

base="$results/exec-${card}-${stamp}"
python3 "$here/summarize.py" --ab "$ab_json" --c "$c_json" --eager "$eager_json" --card "$card" \
  --command "bench/exec/run.sh --only $only --model $model ${tiny[*]}${extra:+ -- ${extra[*]}}" \
  --out-json "$base.json" --out-md "$base.md" > /dev/null
echo "run.sh: results in $base.json and $base.md (total $(took "$t_start") s)"
