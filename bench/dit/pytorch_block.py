#!/usr/bin/env python3
"""One Wan2.2 A14B DiT block in PyTorch eager, bf16 on CUDA: the same math as
WanDit::block in bf16 mode (wan22-reference.md section 3.5-3.8: official
autocast numerics with bf16 parameters, fp32 residual stream and modulation,
qk-RMSNorm over the full width, adjacent-pair 3-D RoPE, SDPA attention),
with the same block weights (the safetensors file bench_dit_block --weights-out
writes). Prints a markdown table; --json writes the numbers.

  python3 pytorch_block.py --weights W.safetensors [--tokens 32760,75600] [--iters 10] [--warmup 3]
"""
import argparse, json, math, struct, sys, time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("pytorch_block: skip (no torch)")
    sys.exit(0)

DT = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}


def load_safetensors(path, device):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = t.to(device)
    return out


def rope_params(n_pos, dim, theta=10000.0):
    freqs = torch.outer(torch.arange(n_pos, dtype=torch.float64),
                        1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64).div(dim)))
    return torch.polar(torch.ones_like(freqs), freqs)


def rope_table(d, f, h, w, device):
    freqs = torch.cat([rope_params(1024, d - 4 * (d // 6)), rope_params(1024, 2 * (d // 6)),
                       rope_params(1024, 2 * (d // 6))], dim=1)
    c = d // 2
    parts = freqs.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
    tab = torch.cat([parts[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                     parts[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
                     parts[2][:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(f * h * w, 1, -1)
    return torch.view_as_real(tab).to(torch.float32).to(device)  # [S, 1, d/2, 2] (cos, sin), applied in fp32


def rope_apply(x, tab):  # x [1, S, N, d] bf16 -> bf16
    s, n, d = x.shape[1], x.shape[2], x.shape[3]
    xr = x.float().reshape(1, s, n, d // 2, 2)
    re, im = xr[..., 0], xr[..., 1]
    cs, sn = tab[..., 0].unsqueeze(0), tab[..., 1].unsqueeze(0)
    return torch.stack([re * cs - im * sn, re * sn + im * cs], dim=-1).reshape(1, s, n, d).bfloat16()


def rms(x, w, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * w


def block(x, e0, ctx, W, tab, heads, eps=1e-6):
    b, s, dim = x.shape
    d = dim // heads
    e = (W["modulation"].float() + e0).chunk(6, dim=1)  # 6 x [1, 1, D] fp32
    a = F.layer_norm(x, (dim,), eps=eps) * (1 + e[1]) + e[0]
    ab = a.bfloat16()
    q = rms(F.linear(ab, W["self_attn.q.weight"], W["self_attn.q.bias"]), W["self_attn.norm_q.weight"]).view(b, s, heads, d)
    k = rms(F.linear(ab, W["self_attn.k.weight"], W["self_attn.k.bias"]), W["self_attn.norm_k.weight"]).view(b, s, heads, d)
    v = F.linear(ab, W["self_attn.v.weight"], W["self_attn.v.bias"]).view(b, s, heads, d)
    q, k = rope_apply(q, tab), rope_apply(k, tab)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2).reshape(b, s, dim)
    x = x + F.linear(o, W["self_attn.o.weight"], W["self_attn.o.bias"]) * e[2]
    c = F.layer_norm(x, (dim,), W["norm3.weight"].float(), W["norm3.bias"].float(), eps).bfloat16()
    lt = ctx.shape[1]
    q = rms(F.linear(c, W["cross_attn.q.weight"], W["cross_attn.q.bias"]), W["cross_attn.norm_q.weight"]).view(b, s, heads, d)
    k = rms(F.linear(ctx, W["cross_attn.k.weight"], W["cross_attn.k.bias"]), W["cross_attn.norm_k.weight"]).view(b, lt, heads, d)
    v = F.linear(ctx, W["cross_attn.v.weight"], W["cross_attn.v.bias"]).view(b, lt, heads, d)
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2).reshape(b, s, dim)
    x = x + F.linear(o, W["cross_attn.o.weight"], W["cross_attn.o.bias"])
    f = F.layer_norm(x, (dim,), eps=eps) * (1 + e[4]) + e[3]
    y = F.linear(F.gelu(F.linear(f.bfloat16(), W["ffn.0.weight"], W["ffn.0.bias"]), approximate="tanh"),
                 W["ffn.2.weight"], W["ffn.2.bias"])
    return x + y * e[5]


def flops(s, lt, d, f):
    return 2 * s * d * d * 4 + 2 * s * d * d * 2 + 2 * lt * d * d * 2 + 2 * s * d * f * 2 + 4 * s * s * d + 4 * s * lt * d


GRIDS = {32760: (21, 30, 52), 75600: (21, 45, 80)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--tokens", default="32760,75600")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--heads", type=int, default=40)
    ap.add_argument("--json")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of one block (torch.profiler)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("pytorch_block: skip (no CUDA)")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    W = load_safetensors(a.weights, dev)
    dim = W["self_attn.q.weight"].shape[0]
    ffn = W["ffn.0.weight"].shape[0]
    res = []
    print(f"| tokens | text | ms (median of {a.iters}) | TFLOP/s |\n|---|---|---|---|")
    with torch.no_grad():
        for s in [int(v) for v in a.tokens.split(",")]:
            g = GRIDS.get(s, (1, 1, s))
            tab = rope_table(dim // a.heads, *g, dev)
            torch.manual_seed(0)
            x = torch.randn(1, s, dim, device=dev)
            e0 = torch.randn(1, 6, dim, device=dev) * 0.1
            ctx = (torch.randn(1, 512, dim, device=dev) * 0.5).bfloat16()
            ms = []
            for it in range(a.warmup + a.iters):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = block(x, e0, ctx, W, tab, a.heads)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                if it >= a.warmup:
                    ms.append((t1 - t0) * 1e3)
                del out
            if a.profile:
                from torch.profiler import profile, ProfilerActivity
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    block(x, e0, ctx, W, tab, a.heads)
                    torch.cuda.synchronize()
                print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
            ms.sort()
            med = ms[len(ms) // 2]
            tf = flops(s, 512, dim, ffn) / (med * 1e-3) / 1e12
            print(f"| {s} | 512 | {med:.1f} | {tf:.0f} |")
            res.append({"tokens": s, "ms": med, "tflops": tf})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": res}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
