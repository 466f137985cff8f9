#!/usr/bin/env python3
"""wand's LoRA merge against diffusers' (issue 18 item 2), on a tiny model in fp32. PREPARED, NOT RUN
here (the GPU machine has torch, safetensors, peft and the vendored diffusers; see README.md).

    python3 bench/peers/lora_merge_diffusers.py --build build --work /tmp/lora-peer [--device cuda]

1. wand-make-model --preset tiny-t2v --layout diffusers --dit-only: a random fp32 DiT in
   diffusers' layout (transformer/ is the high-noise expert).
2. One set of random factors (every GEMM of every block: self_attn/cross_attn q, k, v, o and
   ffn.0 / ffn.2; rank 4; alpha 2, so alpha / rank = 0.5) written in the three key layouts of Note
   [LoRA key layouts] (model/formats/lora_keys.h): diffusers/PEFT (lora_A / lora_B, the alpha folded
   into lora_A, as diffusers' own conversion does), ComfyUI (diffusion_model. + lora_down / lora_up /
   alpha, plus diff_b on the self-attention biases) and kohya/musubi (lora_unet_ ..., with alpha).
   No norm or modulation diffs: diffusers drops those (lora_conversion_utils.py), wand and ComfyUI
   apply them, so files with them are not comparable with diffusers.
3. diffusers: WanTransformer3DModel.from_pretrained, WanLoraLoaderMixin.lora_state_dict (its own
   key conversion per layout), load_lora_into_transformer, set_adapters(strength), fuse_lora;
   the fused weights are read back per module.
4. wand: build/model/wand-lora-merge transformer/ --lora FILE:STRENGTH --out wand.safetensors
   (the merge of model/lora.h, Note [LoRA merge], on the CPU in fp32).
5. For every merged tensor: max |wand - diffusers| / max |diffusers| <= 1e-6 (fp32), and the
   three layouts give the same wand tensors. Prints one line per layout and writes
   WORK/lora_merge_diffusers.json; exit 1 on a mismatch.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402

# release module (inside blocks.N.) -> diffusers module (Note [Diffusers DiT keys]); written out
# here rather than taken from wand.
MODULES = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0", "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v", "cross_attn.o": "attn2.to_out.0", "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
RANK, ALPHA, STRENGTH = 4, 2.0, 0.8


def factors(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    d, f = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"]
    out = {}
    for b in range(cfg["num_layers"]):
        for m in MODULES:
            fan_in = f if m == "ffn.2" else d
            fan_out = f if m == "ffn.0" else d
            out[(b, m)] = (torch.randn(RANK, fan_in, generator=g) * 0.1, torch.randn(fan_out, RANK, generator=g) * 0.1,
                           torch.randn(fan_out, generator=g) * 0.1 if m.startswith("self_attn") else None)
    return out


def write_layouts(fac, work):
    files = {}
    dif, comfy, kohya = {}, {}, {}
    for (b, m), (down, up, bias) in fac.items():
        dm = f"transformer.blocks.{b}.{MODULES[m]}"
        dif[dm + ".lora_A.weight"] = (down * (ALPHA / RANK)).contiguous()  # alpha folded in, as diffusers stores it
        dif[dm + ".lora_B.weight"] = up.contiguous()
        cm = f"diffusion_model.blocks.{b}.{m}"
        comfy[cm + ".lora_down.weight"], comfy[cm + ".lora_up.weight"] = down.contiguous(), up.contiguous()
        comfy[cm + ".alpha"] = torch.tensor(ALPHA)
        if bias is not None:
            comfy[cm + ".diff_b"] = bias.contiguous()
        km = "lora_unet_" + f"blocks.{b}.{m}".replace(".", "_")
        kohya[km + ".lora_down.weight"], kohya[km + ".lora_up.weight"] = down.contiguous(), up.contiguous()
        kohya[km + ".alpha"] = torch.tensor(ALPHA)
    for name, sd in (("diffusers", dif), ("comfyui", comfy), ("kohya", kohya)):
        files[name] = os.path.join(work, f"lora-{name}.safetensors")
        save_file(sd, files[name])
    return files


def diffusers_merged(transformer_dir, lora_file, device):
    from diffusers import WanTransformer3DModel
    from diffusers.loaders import WanLoraLoaderMixin

    t = WanTransformer3DModel.from_pretrained(transformer_dir, torch_dtype=torch.float32).to(device)
    sd = WanLoraLoaderMixin.lora_state_dict(lora_file)
    if isinstance(sd, tuple):  # some versions return (state_dict, network_alphas)
        sd = sd[0]
    WanLoraLoaderMixin.load_lora_into_transformer(sd, transformer=t, adapter_name="peer")
    t.set_adapters(["peer"], weights=[STRENGTH])
    t.fuse_lora(lora_scale=1.0, adapter_names=["peer"])
    out = {}
    for (b, m) in ((b, m) for b in range(len(t.blocks)) for m in MODULES):
        mod = t.get_submodule(f"blocks.{b}.{MODULES[m]}")
        base = getattr(mod, "base_layer", mod)
        out[f"blocks.{b}.{m}.weight"] = base.weight.detach().float().cpu()
        out[f"blocks.{b}.{m}.bias"] = base.bias.detach().float().cpu()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="wand's build dir (wand-make-model, wand-lora-merge)")
    ap.add_argument("--work", default="/tmp/wand-lora-peer")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    peerlib.use_vendor()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "tiny-t2v-diffusers")
    if not os.path.isdir(model):
        subprocess.check_call([os.path.join(a.build, "model", "wand-make-model"), "--preset", "tiny-t2v", "--layout",
                               "diffusers", "--dit-only", "--seed", str(a.seed), "--out", model])
    tdir = os.path.join(model, "transformer")
    cfg = json.load(open(os.path.join(tdir, "config.json")))
    files = write_layouts(factors(cfg, a.seed), a.work)
    report, ok, wand_ref = {}, True, None
    for layout, f in files.items():
        out = os.path.join(a.work, f"wand-{layout}.safetensors")
        subprocess.check_call([os.path.join(a.build, "model", "wand-lora-merge"), tdir, "--lora", f"{f}:{STRENGTH}",
                               "--out", out])
        wand = load_file(out)
        peer = diffusers_merged(tdir, f, a.device)
        worst, worst_key = 0.0, ""
        for k, w in wand.items():
            if k not in peer:
                continue  # wand-only deltas (none in these files)
            p = peer[k]
            rel = ((w.double() - p.double()).abs().max() / p.double().abs().max().clamp_min(1e-30)).item()
            if rel > worst:
                worst, worst_key = rel, k
        missing = [k for k in wand if k not in peer]
        if layout == "comfyui":
            wand_ref = wand
        report[layout] = {"tensors": len(wand), "max_rel_err": worst, "worst_key": worst_key, "wand_only": missing}
        ok = ok and worst <= 1e-6
        print(f"{layout:9s} tensors={len(wand)} max_rel_err={worst:.3e} ({worst_key})", flush=True)
    # diff_b is only in the ComfyUI file: the weights of all three layouts must agree bit for bit.
    for layout in ("diffusers", "kohya"):
        w = load_file(os.path.join(a.work, f"wand-{layout}.safetensors"))
        same = all(torch.equal(w[k], wand_ref[k]) for k in w if k.endswith(".weight"))
        report[layout]["weights_equal_comfyui"] = same
        print(f"{layout:9s} weights bitwise equal to comfyui's: {same}")
        # the diffusers file folds alpha into lora_A: equal within rounding, not bitwise
        ok = ok and (same or layout == "diffusers")
    json.dump(report, open(os.path.join(a.work, "lora_merge_diffusers.json"), "w"), indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
