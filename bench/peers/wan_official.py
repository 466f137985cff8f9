#!/usr/bin/env python3
"""Peer (a): the official Wan2.2 generate.py (vendored, unmodified) in its single-GPU
memory-saving mode, timed phase by phase.

    wan_official.py --ckpt DIR --out DIR [--steps 4] [--size 1280*720] [--frames 81]
                    [--image PNG] [--prompt TEXT] [--seed 42] [--tiny]

DIR (--ckpt) is a checkpoint directory in the release layout (prepare.py makes one of links
into a wand-make-model directory). generate.py runs as `python generate.py --task i2v-A14B
--size S --ckpt_dir DIR --offload_model True --convert_model_dtype --t5_cpu --sample_steps N
--frame_num F --image IMG --prompt P --base_seed 42 --save_file OUT/official.mp4`, through
runpy in this process so that the phases can be timed from inside. What this launcher changes
around it, each a note in result.json:
  - flash_attn absent (no wheel on the GPU machine, and no network): the model's attention
    calls wan.modules.attention.flash_attention, which asserts FLASH_ATTN_2_AVAILABLE (its torch
    SDPA branch is only in `attention()`, which model.py does not call). The launcher gives that
    module a flash_attn_varlen_func made of torch SDPA, one call per sequence of the varlen
    batch; for batch 1 without padding (single GPU: seq_len is the true token count, and the
    text context is padded to 512 and attended in full, as with flash-attn) it computes the same.
  - wan/__init__.py imports the s2v and animate pipelines, whose modules import librosa and
    decord (not on the GPU machine); they get stand-ins that fail if touched. dashscope (prompt
    extension, off here) likewise when absent.
  - torch.distributed FSDP pieces used at import by wan/distributed/fsdp.py get a stand-in only if
    this torch lacks them (FSDP is off on one GPU).
--tiny (the preflight): the model directory holds wand-make-model's tiny-i2v; the official code
hard-codes the umT5-XXL and the 96-wide VAE, so both are built from the checkpoint's shapes
instead (the rest of the code path is the full-size one).
"""
import argparse
import os
import runpy
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--size", default="1280*720")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--image", default=None)
    p.add_argument("--prompt", default="a red kite over the sea at dawn")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--tiny", action="store_true")
    return p.parse_args()


def sdpa_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, dropout_p=0.0,
                softmax_scale=None, causal=False, window_size=(-1, -1), deterministic=False, **unused):
    """flash_attn.flash_attn_varlen_func's contract (packed [total, heads, head_dim] q/k/v and
    cumulative sequence offsets; returns packed [total_q, heads, head_dim]) on torch SDPA."""
    import torch.nn.functional as F
    if tuple(window_size) != (-1, -1):
        raise NotImplementedError("sdpa_varlen: windowed attention is not used by Wan2.2 A14B")
    cq = cu_seqlens_q.tolist()
    ck = cu_seqlens_k.tolist()
    outs = []
    for i in range(len(cq) - 1):
        qi = q[cq[i]:cq[i + 1]].transpose(0, 1).unsqueeze(0)
        ki = k[ck[i]:ck[i + 1]].transpose(0, 1).unsqueeze(0)
        vi = v[ck[i]:ck[i + 1]].transpose(0, 1).unsqueeze(0)
        o = F.scaled_dot_product_attention(qi, ki, vi, dropout_p=dropout_p, is_causal=causal, scale=softmax_scale)
        outs.append(o.squeeze(0).transpose(0, 1))
    import torch
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def install_shims(rec):
    import torch
    # torch.cuda.amp: deprecated for torch.amp; the official modules import it at module level.
    try:
        import torch.cuda.amp  # noqa: F401
    except ImportError:
        amp = types.ModuleType("torch.cuda.amp")
        amp.autocast = lambda *a, **k: torch.amp.autocast("cuda", *a, **k)
        sys.modules["torch.cuda.amp"] = amp
        torch.cuda.amp = amp
        rec.note("torch.cuda.amp absent: stand-in over torch.amp.autocast('cuda')")
    # wan/distributed/fsdp.py imports FSDP1 and torch.distributed.utils._free_storage at module level.
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel, MixedPrecision, ShardingStrategy  # noqa: F401
        from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy  # noqa: F401
        from torch.distributed.utils import _free_storage  # noqa: F401
    except ImportError as e:
        peerlib.stand_in("wan.distributed.fsdp", f"this torch lacks FSDP1 pieces ({e}); FSDP is off on one GPU",
                         force=True)
        rec.note(f"wan.distributed.fsdp replaced by a stand-in: {e}")
    for mod in ("wan.speech2video", "wan.animate"):
        peerlib.stand_in(mod, "s2v / animate pipelines, unused by i2v-A14B (librosa, decord absent)", force=True)
    rec.note("wan.speech2video and wan.animate are stand-ins (unused by i2v-A14B; they import librosa / decord)")
    if peerlib.stand_in("dashscope", "prompt extension is off"):
        rec.note("dashscope absent: stand-in (prompt extension is off)")


def install_attention(rec):
    import wan.modules.attention as A
    if A.FLASH_ATTN_2_AVAILABLE or A.FLASH_ATTN_3_AVAILABLE:
        rec.result["attention"] = "flash_attn 3" if A.FLASH_ATTN_3_AVAILABLE else "flash_attn 2"
        return
    A.flash_attn = types.SimpleNamespace(flash_attn_varlen_func=sdpa_varlen)
    A.FLASH_ATTN_2_AVAILABLE = True
    rec.result["attention"] = "torch SDPA (bench/peers varlen shim; flash_attn absent)"
    rec.note("flash_attn absent: wan.modules.attention.flash_attention runs on torch SDPA through the launcher's "
             "flash_attn_varlen_func stand-in")


def install_tiny(rec, ckpt):
    """Builds the umT5 encoder and the VAE from the checkpoint's shapes (the preflight's tiny model)."""
    import torch
    import wan.modules.t5 as T5
    import wan.modules.vae2_1 as V
    sd = torch.load(os.path.join(ckpt, "models_t5_umt5-xxl-enc-bf16.pth"), map_location="cpu")
    vocab, dim = sd["token_embedding.weight"].shape
    layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    shape = dict(vocab_size=vocab, dim=dim, dim_attn=sd["blocks.0.attn.q.weight"].shape[0],
                 dim_ffn=sd["blocks.0.ffn.fc1.weight"].shape[0],
                 num_heads=sd["blocks.0.pos_embedding.embedding.weight"].shape[1], encoder_layers=layers,
                 decoder_layers=layers, num_buckets=sd["blocks.0.pos_embedding.embedding.weight"].shape[0])
    del sd
    real_umt5 = T5.umt5_xxl
    T5.umt5_xxl = lambda **kw: real_umt5(**{**kw, **shape})
    vae_dim = torch.load(os.path.join(ckpt, "Wan2.1_VAE.pth"), map_location="cpu")["encoder.conv1.weight"].shape[0]
    real_vae = V._video_vae
    V._video_vae = lambda **kw: real_vae(**{**kw, "dim": vae_dim})
    rec.note(f"tiny: umT5 {shape}, VAE dim {vae_dim} from the checkpoint")


def install_timers(rec):
    import wan.image2video as I2V
    import wan.modules.t5 as T5
    import wan.modules.vae2_1 as V
    import wan.utils.utils as U
    from wan.utils import fm_solvers, fm_solvers_unipc

    rec.wrap(I2V.WanI2V, "__init__", "load")
    rec.wrap(T5.T5EncoderModel, "__call__", "text")
    rec.wrap(V.Wan2_1_VAE, "encode", "encode")
    rec.wrap(V.Wan2_1_VAE, "decode", "decode")

    real_save = U.save_video

    def save_video(*a, **k):
        path = k.get("save_file")
        with rec.phase("save"):
            real_save(*a, **k)
        if path and not os.path.exists(path):
            rec.note(f"save_video wrote no file ({path}); the official code logs and goes on "
                     "(imageio's ffmpeg backend absent?)")
    U.save_video = save_video

    state = {"i": 0}
    real_prepare = I2V.WanI2V._prepare_model_for_timestep

    def prepare(self, t, boundary, offload_model):
        expert = "high" if t.item() >= boundary else "low"
        rec.step_begin(state["i"], expert)
        t0 = time.time()
        m = real_prepare(self, t, boundary, offload_model)
        peerlib.cuda_sync()
        rec.mark("swap", "step", index=state["i"], s=time.time() - t0)
        return m
    I2V.WanI2V._prepare_model_for_timestep = prepare

    for cls in (fm_solvers_unipc.FlowUniPCMultistepScheduler, fm_solvers.FlowDPMSolverMultistepScheduler):
        real_step = cls.step

        def step(self, *a, _real=real_step, **k):
            out = _real(self, *a, **k)
            rec.step_end(state["i"])
            state["i"] += 1
            return out
        cls.step = step


def main():
    a = parse()
    cfg = {"peer": "official", "mode": "--offload_model True --convert_model_dtype --t5_cpu", "steps": a.steps,
           "size": a.size, "frames": a.frames, "ckpt": a.ckpt, "tiny": a.tiny}
    rec = peerlib.Recorder(a.out, "official", cfg)
    rc = 0
    try:
        peerlib.use_vendor(wan=True)
        import torch
        rec.result["torch"] = torch.__version__
        install_shims(rec)
        install_attention(rec)
        if a.tiny:
            install_tiny(rec, a.ckpt)
        install_timers(rec)
        argv = [os.path.join(peerlib.WAN_ROOT, "generate.py"), "--task", "i2v-A14B", "--size", a.size,
                "--ckpt_dir", a.ckpt, "--offload_model", "True", "--convert_model_dtype", "--t5_cpu",
                "--sample_steps", str(a.steps), "--frame_num", str(a.frames), "--prompt", a.prompt,
                "--base_seed", str(a.seed), "--save_file", os.path.join(a.out, "official.mp4")]
        if a.image:
            argv += ["--image", a.image]
        rec.result["argv"] = argv
        print("official: " + " ".join(argv), flush=True)
        sys.argv = argv
        with rec.phase("generate_py"):
            runpy.run_path(argv[0], run_name="__main__")
    except BaseException as e:  # SystemExit from argparse / asserts included
        rec.fail(e)
        rc = 1
    rec.finish()
    sys.exit(rc)


if __name__ == "__main__":
    main()
