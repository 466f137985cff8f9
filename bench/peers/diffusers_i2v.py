#!/usr/bin/env python3
"""Peer (b): diffusers' WanImageToVideoPipeline (vendored diffusers) on random bf16 weights of
the real Wan2.2 I2V-A14B geometry, with one of its offloading modes, timed phase by phase.

    diffusers_i2v.py --out DIR --tokenizer DIR [--offload group|model|sequential|none]
                     [--steps 4] [--size 1280*720] [--frames 81] [--image PNG] [--prompt TEXT]
                     [--seed 42] [--tiny]

Components, as scripts/convert_wan_to_diffusers.py assembles "Wan2.2-I2V-14B-720p": two
WanTransformer3DModel experts (transformer = high noise, transformer_2 = low noise,
boundary_ratio 0.9), UMT5EncoderModel (umt5-xxl geometry, bf16), AutoencoderKLWan (Wan2.1 VAE,
fp32 as the diffusers docs load it), UniPCMultistepScheduler with flow sigmas. flow_shift is 5.0
(the official 720p i2v value, not the converter's 3.0) and the guidance 3.5 / 3.5, so that the
same steps fall on each expert as in the official run; the negative prompt is the official one.

Weights: built in-process, not read from a file. Each module is made on the meta device
(accelerate.init_empty_weights: parameters on meta, buffers such as RoPE tables real), then
every parameter is drawn on the GPU in bf16 (seconds for 14B) and the module moved to host
memory, where a from_pretrained load would leave it. Converting the release-layout files instead
would read 2 x 28.6 GB + 11.4 GB from disk and rename every key, for the same timing: the work
per step depends on the shapes, not on the values.

Offloading (--offload):
  group       (default) the diffusers docs' low-memory recipe for Wan 14B: umT5 block-level group
              offload (4 blocks per group), each transformer leaf-level group offload with CUDA
              streams (prefetch of the next layer while this one runs), the VAE on the GPU; plus
              record_stream=True, which enable_group_offload documents as faster (without it each
              layer's offload waits for the GPU, so the host cannot run ahead). The
              mode meant for cards smaller than one expert (28.6 GB), so the one to set beside
              wand's 23 GiB budget.
  model       enable_model_cpu_offload(): whole components move to the GPU when called (one
              expert, 28.6 GB, at a time). Fastest offload on an 80 GB card; needs > 30 GB.
  sequential  enable_sequential_cpu_offload(): accelerate's per-leaf offload, no prefetch.
  none        everything on the GPU (both experts: ~69 GB of weights; may not fit 80 GB).
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402

# Wan2.2 I2V-A14B in diffusers' names (scripts/convert_wan_to_diffusers.py, "Wan2.2-I2V-14B-720p").
TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                   out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40,
                   cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None,
                   added_kv_proj_dim=None)
# google/umt5-xxl's config.json (encoder half).
UMT5 = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_decoder_layers=24,
            num_heads=64, relative_attention_num_buckets=32, relative_attention_max_distance=128,
            dropout_rate=0.1, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", is_encoder_decoder=True,
            tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
            scalable_attention=True)
VAE = dict()  # AutoencoderKLWan's defaults are the Wan2.1 VAE
# --tiny (the preflight): the same modules, a few layers wide.
TINY_TRANSFORMER = dict(TRANSFORMER, num_attention_heads=2, attention_head_dim=32, text_dim=64, ffn_dim=128,
                        num_layers=2)
TINY_UMT5 = dict(UMT5, vocab_size=512, d_model=64, d_kv=16, d_ff=160, num_layers=2, num_decoder_layers=2,
                 num_heads=4)
TINY_VAE = dict(base_dim=8)


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--offload", default="group", choices=["group", "model", "sequential", "none"])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--size", default="1280*720")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--image", default=None)
    p.add_argument("--prompt", default="a red kite over the sea at dawn")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--shift", type=float, default=5.0)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--tiny", action="store_true")
    return p.parse_args()


def init_(t, name, gen):
    """The random init of wand-make-model (model/make_model/make_model.h), by parameter name."""
    if "scale_shift_table" in name:
        t.normal_(0.0, 1.0 / math.sqrt(t.shape[-1]), generator=gen)
    elif t.dim() >= 2:
        t.normal_(0.0, 1.0 / math.sqrt(t[0].numel()), generator=gen)
    elif name.endswith("bias"):
        t.normal_(0.0, 0.05, generator=gen)
    elif "norm" in name:
        t.normal_(0.0, 0.1, generator=gen).add_(1.0)
    else:
        t.normal_(0.0, 0.02, generator=gen)


def materialize(model, dtype, seed, keep_fp32=()):
    """Gives every meta parameter of `model` random values drawn on the GPU, then moves the module
    to host memory. Tied parameters stay tied. Parameters under a module named in keep_fp32 stay
    float32, as ModelMixin.from_pretrained(torch_dtype=bf16) keeps a model's _keep_in_fp32_modules
    (model_loading_utils.load_model_dict_into_meta: a component of the parameter's name)."""
    import torch
    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)
    done = {}
    n = 0
    for mname, mod in model.named_modules():
        for pname, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) not in done:
                full = f"{mname}.{pname}" if mname else pname
                want = torch.float32 if any(k in full.split(".") for k in keep_fp32) else dtype
                t = torch.empty(p.shape, dtype=want if p.is_floating_point() else p.dtype, device="cuda")
                init_(t, full, gen)
                done[id(p)] = torch.nn.Parameter(t, requires_grad=False)
                n += t.numel()
            mod._parameters[pname] = done[id(p)]
    model.to("cpu")
    model.eval().requires_grad_(False)
    torch.cuda.empty_cache()
    return n


def build(a, rec):
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    tcfg, ucfg, vcfg = (TINY_TRANSFORMER, TINY_UMT5, TINY_VAE) if a.tiny else (TRANSFORMER, UMT5, VAE)
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    with init_empty_weights():
        text_encoder = UMT5EncoderModel(UMT5Config(**ucfg))
    counts = {"text_encoder": materialize(text_encoder, torch.bfloat16, a.seed + 1)}
    experts = []
    for i, name in enumerate(("transformer", "transformer_2")):
        with init_empty_weights():
            m = WanTransformer3DModel(**tcfg)
        counts[name] = materialize(m, torch.bfloat16, a.seed + 2 + i, m._keep_in_fp32_modules or ())
        if a.offload == "group":
            # As the docs do it, one model at a time (each expert's pinned copy replaces its
            # pageable one as the groups are made, so host memory never holds both).
            m.enable_group_offload(onload_device=torch.device("cuda"), offload_device=torch.device("cpu"),
                                   offload_type="leaf_level", use_stream=True, record_stream=True)
        experts.append(m)
    with torch.device("cuda"):
        vae = AutoencoderKLWan(**vcfg)  # default init; fp32
    vae.eval().requires_grad_(False)
    counts["vae"] = sum(p.numel() for p in vae.parameters())
    rec.result["params"] = counts
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=a.shift)
    pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                                   transformer=experts[0], transformer_2=experts[1], boundary_ratio=0.9)
    if a.offload == "group":
        from diffusers.hooks import apply_group_offloading
        apply_group_offloading(text_encoder, onload_device=torch.device("cuda"), offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=4)
        vae.to("cuda")
    elif a.offload == "model":
        pipe.enable_model_cpu_offload()
    elif a.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to("cuda")
    torch.cuda.empty_cache()
    return pipe


def install_timers(pipe, rec):
    state = {"i": 0, "pending": True}

    def pre_hook(expert):
        def hook(module, args, kwargs=None):
            if state["pending"]:
                state["pending"] = False
                rec.step_begin(state["i"], expert)
        return hook

    pipe.transformer.register_forward_pre_hook(pre_hook("high"))
    pipe.transformer_2.register_forward_pre_hook(pre_hook("low"))
    real_step = pipe.scheduler.step

    def step(*a, **k):
        out = real_step(*a, **k)
        rec.step_end(state["i"])
        state["i"] += 1
        state["pending"] = True
        return out
    pipe.scheduler.step = step
    rec.wrap(pipe, "encode_prompt", "text")
    rec.wrap(pipe.vae, "encode", "encode")
    rec.wrap(pipe.vae, "decode", "decode")


def save(frames, path, rec):
    from diffusers.utils import export_to_video
    from diffusers.utils.export_utils import _legacy_export_to_video
    with rec.phase("save"):
        try:
            export_to_video(frames, path, fps=16)
        except Exception as e:  # imageio without its ffmpeg backend
            rec.note(f"export_to_video failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                     "wrote the video with diffusers' OpenCV fallback")
            _legacy_export_to_video(frames, path, fps=16)


def main():
    a = parse()
    w, h = (int(x) for x in a.size.split("*"))
    cfg = {"peer": "diffusers", "mode": a.offload, "steps": a.steps, "size": a.size, "frames": a.frames,
           "flow_shift": a.shift, "guidance": a.guidance, "tiny": a.tiny}
    rec = peerlib.Recorder(a.out, "diffusers", cfg)
    rc = 0
    try:
        peerlib.use_vendor()
        import torch
        import diffusers
        rec.result["torch"] = torch.__version__
        rec.result["diffusers"] = diffusers.__version__
        rec.result["attention"] = f"diffusers attention dispatch (default backend: torch SDPA); offload {a.offload}"
        negative = peerlib.official_negative_prompt()
        from PIL import Image
        image = Image.open(a.image).convert("RGB") if a.image else peerlib.gradient_image(w, h)
        with rec.phase("load"):
            pipe = build(a, rec)
        install_timers(pipe, rec)
        gen = torch.Generator(device="cuda").manual_seed(a.seed)
        t0 = time.time()
        out = pipe(image=image, prompt=a.prompt, negative_prompt=negative, height=h, width=w,
                   num_frames=a.frames, num_inference_steps=a.steps, guidance_scale=a.guidance,
                   guidance_scale_2=a.guidance, generator=gen, output_type="np", max_sequence_length=512)
        peerlib.cuda_sync()
        rec.result["pipeline_call_s"] = round(time.time() - t0, 3)
        save(out.frames[0], os.path.join(a.out, "diffusers.mp4"), rec)
    except BaseException as e:
        rec.fail(e)
        rc = 1
    rec.finish()
    sys.exit(rc)


if __name__ == "__main__":
    main()
