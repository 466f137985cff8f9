#!/usr/bin/env python3
"""Makes what the peers need from a wand-make-model directory, without writing into it:

    prepare.py --model DIR --work DIR [--size 1280*720]

  WORK/tokenizer/       the model's google/umt5-xxl folder, loadable by transformers'
                        AutoTokenizer (checked here; see "tokenizer" below)
  WORK/official-ckpt/   a checkpoint directory in the release layout for generate.py, made of
                        links into the model (see "shared experts" below)
  WORK/input-WxH.png    the input image (bench/e2e's gradient) at the job's size: the official
                        i2v derives the output size from the image's aspect ratio and the area
  WORK/prepare.json     what was found and done; one line per problem on stdout

Tokenizer: wand-make-model writes spiece.model (a SentencePiece unigram model),
tokenizer_config.json (tokenizer_class T5Tokenizer, extra_ids 0) and special_tokens_map.json, as
google/umt5-xxl has them, but no tokenizer.json. transformers converts spiece.model itself (it
needs sentencepiece and protobuf, both on the GPU machine). If that fails, a tokenizer.json is
written here from the model's pieces and scores with the tokenizers library (Unigram, Metaspace,
"$A </s>"), and loaded instead.

Shared experts: with --share-experts, low_noise_model's index names its shards
"../high_noise_model/<shard>". The vendored diffusers refuses shard names with a path separator
("not allowed") when WanModel.from_pretrained reads them, so official-ckpt/low_noise_model is a
real folder whose index names each shard plainly and whose shard names are links to
high_noise_model's files. Both experts still read the same bytes from disk.
"""
import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peerlib  # noqa: E402

INDEX = "diffusion_pytorch_model.safetensors.index.json"
SINGLE = "diffusion_pytorch_model.safetensors"
REQUIRED = {
    "official": ["torch", "torchvision", "PIL", "numpy", "tqdm", "einops", "regex", "imageio", "transformers",
                 "safetensors", "easydict", "ftfy", "diffusers", "huggingface_hub"],
    "diffusers": ["torch", "transformers", "accelerate", "huggingface_hub", "safetensors", "PIL", "numpy", "regex",
                  "requests", "filelock", "httpx", "packaging", "ftfy", "diffusers"],
}
OPTIONAL = {  # module: what happens without it
    "official": {"flash_attn": "attention on torch SDPA (launcher's varlen stand-in)",
                 "imageio_ffmpeg": "save_video writes no file (the official code logs and goes on)",
                 "dashscope": "stand-in (prompt extension off)", "decord": "stand-in (animate / s2v unused)",
                 "librosa": "stand-in (s2v unused)"},
    "diffusers": {"imageio_ffmpeg": "video written with diffusers' OpenCV fallback",
                  "cv2": "no OpenCV fallback for the video file either"},
}


def problem(report, text):
    print(f"prepare: {text}", flush=True)
    report["problems"].append(text)


def check_model(model, report):
    before = len(report["problems"])
    need = ["models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth", "google/umt5-xxl/spiece.model",
            "google/umt5-xxl/tokenizer_config.json", "high_noise_model/config.json", "low_noise_model/config.json"]
    for rel in need:
        if not os.path.exists(os.path.join(model, rel)):
            problem(report, f"model {model} lacks {rel}")
    for e in ("high_noise_model", "low_noise_model"):
        d = os.path.join(model, e)
        if not (os.path.exists(os.path.join(d, INDEX)) or os.path.exists(os.path.join(d, SINGLE))):
            problem(report, f"model {model}: {e} has neither {INDEX} nor {SINGLE}")
    return len(report["problems"]) == before


def link(src, dst):
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.abspath(src), dst)


def shadow_checkpoint(model, work, tokenizer_dir, report):
    ck = os.path.join(work, "official-ckpt")
    shutil.rmtree(ck, ignore_errors=True)
    os.makedirs(os.path.join(ck, "google"))
    for f in ("models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth"):
        link(os.path.join(model, f), os.path.join(ck, f))
    link(tokenizer_dir, os.path.join(ck, "google", "umt5-xxl"))
    for e in ("high_noise_model", "low_noise_model"):
        src = os.path.join(model, e)
        idx_path = os.path.join(src, INDEX)
        idx = json.load(open(idx_path)) if os.path.exists(idx_path) else None
        if idx is None or all(os.path.basename(v) == v for v in idx["weight_map"].values()):
            link(src, os.path.join(ck, e))
            continue
        dst = os.path.join(ck, e)
        os.makedirs(dst)
        link(os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
        targets = {}
        for v in idx["weight_map"].values():
            real = os.path.realpath(os.path.join(src, v))
            if targets.setdefault(os.path.basename(v), real) != real:
                raise SystemExit(f"prepare: {idx_path}: two shards named {os.path.basename(v)}")
        for name, real in targets.items():
            link(real, os.path.join(dst, name))
        idx = dict(idx, weight_map={k: os.path.basename(v) for k, v in idx["weight_map"].items()})
        with open(os.path.join(dst, INDEX), "w") as f:
            json.dump(idx, f, indent=2, sort_keys=True)
        report["notes"].append(f"{e}: index names shards through '../' (--share-experts); official-ckpt/{e} "
                               f"links {len(targets)} shards under plain names")
    return ck


def tokenizer_json_from_spm(spm_path, out_path):
    """tokenizer.json (HF tokenizers) from a SentencePiece unigram model: T5's pipeline."""
    import sentencepiece as spm
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    sp = spm.SentencePieceProcessor(model_file=spm_path)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    eos = sp.id_to_piece(sp.eos_id())
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                       special_tokens=[(eos, sp.eos_id())])
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):
            tok.add_special_tokens([sp.id_to_piece(i)])
    tok.save(out_path)


def prepare_tokenizer(model, work, report):
    src = os.path.join(model, "google", "umt5-xxl")
    dst = os.path.join(work, "tokenizer")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    negative = peerlib.official_negative_prompt()
    from transformers import AutoTokenizer

    def try_load(route):
        tok = AutoTokenizer.from_pretrained(dst)
        ids = tok(["a red kite over the sea at dawn", negative], padding="max_length", truncation=True,
                  max_length=512, add_special_tokens=True, return_tensors="pt")
        lens = ids.attention_mask.sum(1).tolist()
        top = int(ids.input_ids.max())
        if top >= 256384:
            raise ValueError(f"token id {top} is outside umT5's vocabulary")
        report["tokenizer"] = {"dir": dst, "route": route, "class": type(tok).__name__,
                               "vocab_size": tok.vocab_size, "prompt_tokens": lens}
        return True

    try:
        return try_load("AutoTokenizer on the model's spiece.model")
    except Exception as e:  # conversion from spiece.model failed
        first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        problem(report, f"AutoTokenizer on {src} failed ({first}); writing tokenizer.json from spiece.model")
    tokenizer_json_from_spm(os.path.join(dst, "spiece.model"), os.path.join(dst, "tokenizer.json"))
    try:
        return try_load("tokenizer.json written by prepare.py from spiece.model")
    except Exception as e:
        problem(report, f"AutoTokenizer on {dst} with tokenizer.json failed too: {type(e).__name__}: {e}")
        return False


def check_modules(report):
    peerlib.use_vendor(wan=True)
    for peer, mods in REQUIRED.items():
        missing = [m for m in mods if not peerlib.have(m)]
        absent = {m: why for m, why in OPTIONAL[peer].items() if not peerlib.have(m)}
        report["modules"][peer] = {"missing": missing, "optional_absent": absent}
        if missing:
            problem(report, f"peer {peer} cannot run here: missing {', '.join(missing)} (no pure-Python copy vendored)")
        for m, why in absent.items():
            print(f"prepare: peer {peer}: {m} absent: {why}", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--size", default="1280*720")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    report = {"model": os.path.abspath(a.model), "problems": [], "notes": [], "modules": {}}
    check_modules(report)
    ok = check_model(a.model, report)
    if ok:
        try:
            tok_ok = prepare_tokenizer(a.model, a.work, report)
        except Exception as e:  # e.g. transformers or torch missing: say so, go on with the links
            problem(report, f"tokenizer check failed: {type(e).__name__}: {e}")
            tok_ok = False
        report["official_ckpt"] = shadow_checkpoint(a.model, a.work, os.path.join(a.work, "tokenizer"), report)
        ok = tok_ok
    w, h = (int(x) for x in a.size.split("*"))
    img = os.path.join(a.work, f"input-{w}x{h}.png")
    try:
        peerlib.gradient_image(w, h).save(img)
        report["image"] = img
    except Exception as e:
        problem(report, f"input image {img}: {type(e).__name__}: {e}")
        ok = False
    report["ok"] = ok
    with open(os.path.join(a.work, "prepare.json"), "w") as f:
        json.dump(report, f, indent=1)
    for n in report["notes"]:
        print(f"prepare: note: {n}")
    print(f"prepare: {'ok' if ok else 'FAILED'}; tokenizer: {report.get('tokenizer', {}).get('route')}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
