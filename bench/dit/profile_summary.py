#!/usr/bin/env python3
"""Groups an Nsight Compute CSV (gpu__time_duration.sum per kernel) of bench_dit_block into
attention / GEMM / fused elementwise / other per block; prints a markdown table.

  profile_summary.py ncu.csv --blocks 3 --tokens 32760
"""
import argparse, collections, csv, sys


def category(name):
    n = name.lower()
    if any(k in n for k in ("fmha", "flash", "sdpa", "attention", "cudnn_generated", "fort_native")):
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "sm90_xmma", "nvjet", "cublas", "matmul")):
        return "gemm"
    if "wand" in n or "row_norm_kernel" in n or "rms_norm_rope" in n:
        return "fused elementwise (wand)"
    if any(k in n for k in ("reduce", "norm")):
        return "reductions / norms (LibTorch)"
    return "other elementwise (LibTorch)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--blocks", type=int, default=1, help="block calls in the profiled run")
    ap.add_argument("--tokens", type=int, default=0)
    a = ap.parse_args()
    by_kernel = collections.defaultdict(lambda: [0.0, 0])
    with open(a.csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("Metric Name") != "gpu__time_duration.sum":
                continue
            v = float(row["Metric Value"].replace(",", ""))
            unit = row.get("Metric Unit", "ns")
            ns = v * {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}.get(unit, 1)
            k = row["Kernel Name"]
            by_kernel[k][0] += ns
            by_kernel[k][1] += 1
    if not by_kernel:
        print("profile_summary: no kernel rows in", a.csv)
        return 1
    total = sum(v[0] for v in by_kernel.values())
    cats = collections.defaultdict(float)
    for k, (ns, _) in by_kernel.items():
        cats[category(k)] += ns
    per = lambda ns: ns / a.blocks / 1e6
    print(f"## Kernel profile of one fused A14B block, {a.tokens} tokens (Nsight Compute, {a.blocks} block calls)\n")
    print(f"Sum of kernel times per block: {per(total):.1f} ms\n")
    print("| part | ms per block | share |\n|---|---|---|")
    for c, ns in sorted(cats.items(), key=lambda x: -x[1]):
        print(f"| {c} | {per(ns):.2f} | {100 * ns / total:.1f}% |")
    print("\n| kernel | calls per block | ms per block |\n|---|---|---|")
    for k, (ns, n) in sorted(by_kernel.items(), key=lambda x: -x[1][0])[:25]:
        print(f"| `{k[:110]}` | {n / a.blocks:.1f} | {per(ns):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
