#!/usr/bin/env python3
"""A whole A14B expert's 40 DiT blocks in PyTorch eager, bf16 on CUDA, all weights resident:
the blocks are read tensor by tensor straight from the expert's release shards (the same
files the C++ benches stream), and pytorch_block.block (the same math as WanDit::block in
bf16 mode) runs over all of them. The non-block parts (patch / text / time embeddings, head)
are not included: they are < 1 % of a forward. Seconds per forward (one branch) and per CFG
step (two forwards), peak allocated memory; --json writes them (bench/exec/run.sh merges it).

  python3 pytorch_forward.py --expert DIR [--tokens 32760,75600] [--iters 2] [--warmup 1] [--json OUT]
"""
import argparse, json, os, struct, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import torch
except ImportError:
    print("pytorch_forward: skip (no torch)")
    sys.exit(0)
from pytorch_block import DT, GRIDS, block, rope_table  # noqa: E402


def shard_headers(expert):
    """{tensor name: (path, absolute offset, nbytes, dtype, shape)} from the index (or one file)."""
    idx = os.path.join(expert, "diffusion_pytorch_model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = [f for f in sorted(os.listdir(expert)) if f.endswith(".safetensors")]
    out = {}
    for rel in files:
        path = os.path.normpath(os.path.join(expert, rel))
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            b, e = v["data_offsets"]
            out[k] = (path, 8 + n + b, e - b, v["dtype"], v["shape"])
    return out


def load_blocks(expert, dev):
    hdr = shard_headers(expert)
    layers = 0
    while f"blocks.{layers}.self_attn.q.weight" in hdr:
        layers += 1
    blocks = []
    for i in range(layers):
        pre = f"blocks.{i}."
        W = {}
        for name, (path, off, nb, dt, shape) in hdr.items():
            if not name.startswith(pre):
                continue
            with open(path, "rb") as f:
                f.seek(off)
                buf = bytearray(f.read(nb))
            t = torch.frombuffer(buf, dtype=DT[dt]).reshape(shape)
            # bf16 parameters as the C++ bf16 run (modulation and norms as stored, used in fp32 by block()).
            W[name[len(pre):]] = t.to(dev, torch.bfloat16 if t.is_floating_point() else t.dtype)
        blocks.append(W)
    return blocks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--expert", required=True, help="expert dir (config.json + shards), e.g. MODEL/high_noise_model")
    ap.add_argument("--tokens", default="32760,75600")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--heads", type=int, default=40)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("pytorch_forward: skip (no CUDA)")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    blocks = load_blocks(a.expert, dev)
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    dim = blocks[0]["self_attn.q.weight"].shape[0]
    weights = torch.cuda.memory_allocated()
    print(f"pytorch_forward: {len(blocks)} blocks ({weights / 2**30:.1f} GiB) loaded in {load_s:.1f} s")
    res = []
    with torch.no_grad():
        for s in [int(v) for v in a.tokens.split(",")]:
            g = GRIDS.get(s, (1, 1, s))
            tab = rope_table(dim // a.heads, *g, dev)
            torch.manual_seed(0)
            x0 = torch.randn(1, s, dim, device=dev)
            e0 = torch.randn(1, 6, dim, device=dev) * 0.1
            ctx = (torch.randn(1, 512, dim, device=dev) * 0.5).bfloat16()
            torch.cuda.reset_peak_memory_stats()
            times = []
            for it in range(a.warmup + a.iters):
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                x = x0
                for W in blocks:
                    x = block(x, e0, ctx, W, tab, a.heads)
                torch.cuda.synchronize()
                if it >= a.warmup:
                    times.append(time.perf_counter() - t1)
                del x
            fwd = min(times)
            res.append({"tokens": s, "forward_s": fwd, "cfg_step_s": 2 * fwd,
                        "peak_allocated_bytes": torch.cuda.max_memory_allocated()})
            print(f"| {s} tokens | forward {fwd:.3f} s | CFG step (2 forwards) {2 * fwd:.3f} s | "
                  f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "layers": len(blocks),
                       "load_s": load_s, "weights_bytes": weights, "results": res,
                       "note": "40 blocks of one expert in PyTorch eager (bench/dit/pytorch_forward.py), "
                               "non-block parts excluded, all weights resident"}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
