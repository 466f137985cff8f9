#!/usr/bin/env bash
# One command on the GPU machine: one A14B expert all-resident vs streamed under a 24 GiB
# VRAM budget, at 832x480 and 1280x720, 81 frames, in one process (bench_streamed_step).
# Writes the JSON to bench/results/exec-streamed-step-<card>-<date>.json.
#   bench/exec/run.sh [BUILD_DIR] [extra bench_streamed_step args...]
# The model dir (default /tmp/wand-bench-a14b, random bf16, 40 blocks, ~28 GB) is written
# on first use; --layers N makes a shorter expert when time or disk is short.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-gpu}"
shift || true
bin="$build/bench/exec/bench_streamed_step"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: $bin not found; build it first: ninja -C $build bench_streamed_step" >&2
  exit 2
fi
card="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' || echo unknown)"
out="$root/bench/results/exec-streamed-step-${card:-unknown}-$(date -u +%Y%m%d-%H%M).json"
"$bin" --json "$out" "$@"
[[ -f "$out" ]] || { echo "run.sh: no results (skipped?)"; exit 0; }
echo "run.sh: results in $out"

# Beside it, on the same card: one block of the same expert in PyTorch eager (bench/dit),
# times the number of blocks = the eager forward with all weights resident.
py=${WAND_TORCH_PYTHON:-}
if [[ -z "$py" ]]; then
  if [[ -x /opt/torch/.venv/bin/python3 ]]; then py=/opt/torch/.venv/bin/python3; else py=python3; fi
fi
blockbin="$build/bench/dit/bench_dit_block"
expert="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$out")"
layers="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"])' "$out")"
if [[ -x "$blockbin" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$blockbin" --model-dir "$expert" --weights-out "$work/block0.safetensors" --tokens 32760,75600 \
    --iters 3 --warmup 1 --json "$work/cpp_block.json" > /dev/null
  "$py" "$root/bench/dit/pytorch_block.py" --weights "$work/block0.safetensors" --tokens 32760,75600 \
    --iters 3 --warmup 1 --json "$work/py_block.json" || echo "run.sh: pytorch_block.py failed"
  if [[ -f "$work/py_block.json" ]]; then
    python3 - "$out" "$work/py_block.json" "$layers" <<'PY'
import json, sys
out, py, layers = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
d = json.load(open(out))
by_tokens = {r["tokens"]: r for r in py["results"]}
d["pytorch_eager"] = {"device": py.get("device"), "torch": py.get("torch"), "layers": layers,
                      "note": "one block in PyTorch eager (bench/dit/pytorch_block.py, same weights) x layers"}
for r in d["results"]:
    p = by_tokens.get(r["tokens"])
    if p:
        ms = p.get("ms") or p.get("median_ms")
        if ms is not None:
            r["pytorch_eager_forward_s"] = ms * layers / 1000.0
json.dump(d, open(out, "w"), indent=1)
print(json.dumps({"pytorch_eager": d["pytorch_eager"],
                  "forward_s": [(r["width"], r["height"], r.get("pytorch_eager_forward_s")) for r in d["results"]]}))
PY
  fi
fi
