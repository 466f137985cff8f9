#!/usr/bin/env bash
# One command: the A14B block through the C++ path (bench_dit_block) and in
# PyTorch eager (pytorch_block.py) with the same weights, side by side.
#   bench/dit/run.sh [BUILD_DIR] [extra bench_dit_block args...]
# The C++ block is timed unfused and with the fused kernels (--fused 0,1 by
# default; pass e.g. --fused 1 for one of them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build}"
shift || true
bin="$build/bench/dit/bench_dit_block"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: $bin not found; build it first: ninja -C $build bench_dit_block" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
weights="$work/block0.safetensors"
echo "== C++ (WanDit::block, bf16)"
"$bin" --weights-out "$weights" --json "$work/cpp.json" "$@"
if [[ ! -f "$work/cpp.json" ]]; then echo "run.sh: C++ bench skipped (no CUDA)"; exit 0; fi
echo "== PyTorch eager (same weights)"
python3 "$here/pytorch_block.py" --weights "$weights" --json "$work/py.json" || echo "run.sh: pytorch_block.py failed"
python3 - "$work/cpp.json" "$work/py.json" <<'PY'
import json, os, sys
cpp = json.load(open(sys.argv[1]))["results"]
py = {}
if os.path.exists(sys.argv[2]):
    d = json.load(open(sys.argv[2])); py = {r["tokens"]: r for r in d["results"]}
    print(f"\ndevice: {d.get('device')}  torch: {d.get('torch')}")
print("\n| tokens | C++ fused | C++ ms | C++ TFLOP/s | PyTorch ms | PyTorch TFLOP/s | C++ / PyTorch time |")
print("|---|---|---|---|---|---|---|")
for c in sorted(cpp, key=lambda r: (r["tokens"], r.get("fused", 0))):
    s = c["tokens"]; p = py.get(s); f = c.get("fused", 0)
    if p:
        print(f"| {s} | {f} | {c['ms']:.1f} | {c['tflops']:.0f} | {p['ms']:.1f} | {p['tflops']:.0f} | {c['ms']/p['ms']:.3f} |")
    else:
        print(f"| {s} | {f} | {c['ms']:.1f} | {c['tflops']:.0f} | - | - | - |")
PY
