"""What the two peer launchers (wan_official.py, diffusers_i2v.py) share: the vendored source
path, stand-ins for modules the GPU machine lacks, and the event recorder that marks each phase
and step of a job so that summarize.py can join them with the card and host samples.

Events go to DIR/events.jsonl as they happen (one JSON object a line, epoch seconds, flushed), so
that a peer killed by the OOM killer still leaves its phases behind; DIR/result.json is written at
exit with the status (ok / error + traceback tail), the allocator's peaks and ru_maxrss.

Every phase boundary waits for the GPU (torch.cuda.synchronize): both peers queue work
asynchronously, and a boundary taken on the host alone would charge a phase's kernels to the next.
"""
import atexit
import contextlib
import functools
import importlib.util
import json
import os
import resource
import sys
import time
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR = os.path.join(HERE, "vendor")
SITE = os.path.join(VENDOR, "site")
WAN_ROOT = os.path.join(VENDOR, "Wan2.2")


def use_vendor(wan=False):
    """Puts the vendored packages first on sys.path (diffusers, ftfy, wcwidth, easydict; Wan2.2)."""
    if not os.path.isdir(SITE):
        raise SystemExit(f"peers: {SITE} is missing: run bench/peers/fetch-peers.sh (and carry bench/peers/vendor)")
    paths = [SITE] + ([WAN_ROOT] if wan else [])
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)


def official_negative_prompt():
    """The official default negative prompt (wan/configs/shared_config.py), read without importing
    the wan package (whose __init__ imports every pipeline)."""
    spec = importlib.util.spec_from_file_location("wan_shared_config",
                                                  os.path.join(WAN_ROOT, "wan", "configs", "shared_config.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.wan_shared_cfg.sample_neg_prompt


def have(mod):
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


class _Absent(types.ModuleType):
    """A stand-in for a module the job never uses: importing it works, touching it fails loudly."""

    def __init__(self, name, why):
        super().__init__(name)
        self.__dict__["_why"] = why
        self.__dict__["__path__"] = []  # lets `import name.sub` resolve to another stand-in

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        why = self.__dict__["_why"]
        name = self.__dict__["__name__"]

        class _Unavailable:
            def __init__(self, *a, **k):
                raise RuntimeError(f"{name}.{attr} is a stand-in ({why})")

        _Unavailable.__name__ = attr
        return _Unavailable


def stand_in(name, why, force=False):
    """Registers a stand-in for `name` unless the real module is importable (or force)."""
    if not force and have(name.split(".")[0]):
        return False
    sys.modules[name] = _Absent(name, why)
    return True


def cuda_sync():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Recorder:
    def __init__(self, out_dir, peer, config):
        self.dir = out_dir
        self.peer = peer
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        self.events = open(os.path.join(out_dir, "events.jsonl"), "a", buffering=1)
        self.result = {"peer": peer, "config": config, "status": "running", "start": time.time(), "notes": []}
        self.steps = 0
        atexit.register(self.finish)
        self.mark("process", "start")

    def note(self, text):
        """A one-line remark that goes into the summary (a workaround taken, a fallback)."""
        print(f"[{self.peer}] note: {text}", flush=True)
        self.result["notes"].append(text)

    def mark(self, kind, name, **extra):
        ev = {"t": time.time(), "kind": kind, "name": name}
        ev.update(extra)
        self.events.write(json.dumps(ev) + "\n")

    @contextlib.contextmanager
    def phase(self, name, **extra):
        cuda_sync()
        self.mark("begin", name, **extra)
        try:
            yield
        finally:
            cuda_sync()
            self.mark("end", name, **extra)

    def wrap(self, owner, attr, phase):
        """Replaces owner.attr (a function or method) with one that runs inside phase `phase`."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*a, **k):
            with self.phase(phase):
                return fn(*a, **k)

        setattr(owner, attr, timed)
        return fn

    def step_begin(self, index, expert):
        cuda_sync()
        self.mark("step_begin", "step", index=index, expert=expert)

    def step_end(self, index):
        cuda_sync()
        self.mark("step_end", "step", index=index)

    def fail(self, exc):
        tb = traceback.format_exc()
        self.result["status"] = "error"
        self.result["error"] = f"{type(exc).__name__}: {exc}"
        self.result["traceback_tail"] = tb.splitlines()[-25:]
        print(tb, file=sys.stderr, flush=True)

    def finish(self):
        if self.result.get("end"):
            return
        cuda_sync()
        self.mark("process", "end")
        r = self.result
        r["end"] = time.time()
        if r["status"] == "running":
            r["status"] = "ok"
        r["ru_maxrss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            r["torch_max_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
            r["torch_max_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2 ** 30, 3)
        with open(os.path.join(self.dir, "result.json"), "w") as f:
            json.dump(r, f, indent=1)
        self.events.close()


def gradient_image(width, height):
    """The input image of bench/e2e/run.sh (an RGB gradient), at the job's size."""
    from PIL import Image
    import numpy as np
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    r = np.broadcast_to((x * 255) // width, (height, width))
    g = np.broadcast_to((y * 255) // height, (height, width))
    b = ((x + y) * 255) // (width + height)
    return Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8), "RGB")
