#!/usr/bin/env python3
"""Joins bench/e2e/run.sh's samples into per-phase figures.

    phases.py WORK CONFIG...      (CONFIG: streamed, resident)

Inputs per configuration (WORK/CONFIG/): jobs.txt ("tag t0 t1 rc", epoch seconds), daemon.log
(the daemon's own "job phase NAME" lines, local time), smi.csv (nvidia-smi timestamp, MiB used,
10 Hz), rss.txt (epoch, VmRSS / VmHWM / RssAnon / RssFile / RssShmem of the daemon), vmhwm.txt,
wand.json. Writes WORK/summary.json and WORK/summary.md: per job the wall time, each phase's
duration, the card's true peak and the daemon's host peak in it, the split of the host peak
(anonymous / file pages / shared) and the streamed / resident time ratio.
"""
import datetime as dt
import json
import os
import re
import sys
import time

GIB = 1024 ** 3


def local_epoch(s, fmt):
    d = dt.datetime.strptime(s, fmt)
    return time.mktime(d.timetuple()) + d.microsecond / 1e6


def read_phases(path):
    out = []  # (epoch, phase)
    pat = re.compile(r"^(\S+) sched \S+ job phase (\w+)")
    for line in open(path, errors="replace"):
        m = pat.match(line)
        if m:
            out.append((local_epoch(m.group(1), "%Y-%m-%dT%H:%M:%S.%f"), m.group(2)))
    return out


def read_smi(path):
    out = []  # (epoch, bytes used)
    for line in open(path, errors="replace"):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        out.append((local_epoch(parts[0], "%Y/%m/%d %H:%M:%S.%f"), int(parts[1]) * 1024 * 1024))
    return out


def read_rss(path):
    out = []  # (epoch, rss bytes, hwm bytes, {field: bytes})
    for line in open(path, errors="replace"):
        f = line.split()
        try:
            t = float(f[0])
            vals = {f[i].rstrip(":"): int(f[i + 1]) * 1024 for i in range(1, len(f) - 2, 3)}
        except (ValueError, IndexError):
            continue
        if "VmRSS" in vals:
            out.append((t, vals.get("VmRSS", 0), vals.get("VmHWM", 0), vals))
    return out


def summarize(work, name):
    d = os.path.join(work, name)
    phases = read_phases(os.path.join(d, "daemon.log"))
    smi = read_smi(os.path.join(d, "smi.csv"))
    rss = read_rss(os.path.join(d, "rss.txt"))
    cfg = json.load(open(os.path.join(d, "wand.json")))
    jobs = []
    for line in open(os.path.join(d, "jobs.txt")):
        tag, t0, t1, rc = line.split()
        t0, t1 = float(t0), float(t1)
        marks = [(t0, "load")] + [(t, p) for t, p in phases if t0 <= t <= t1] + [(t1, "end")]
        spans = []
        for (a, p), (b, _) in zip(marks, marks[1:]):
            if spans and spans[-1]["phase"] == p:
                spans[-1]["end"] = b
            else:
                spans.append({"phase": p, "start": a, "end": b})
        per_phase = []
        for s in spans:
            used = [u for t, u in smi if s["start"] <= t <= s["end"]]
            host_in = [r for t, r, _, _ in rss if s["start"] <= t <= s["end"]]
            per_phase.append({"phase": s["phase"], "s": round(s["end"] - s["start"], 2),
                              "card_peak_gib": round(max(used) / GIB, 3) if used else None,
                              "host_rss_peak_gib": round(max(host_in) / GIB, 3) if host_in else None,
                              "samples": len(used)})
        host = [(r, v) for t, r, _, v in rss if t0 <= t <= t1]
        split = None
        if host:
            r, v = max(host, key=lambda x: x[0])
            split = {k: round(v.get(k, 0) / GIB, 3) for k in ("RssAnon", "RssFile", "RssShmem")}
        jobs.append({"job": tag, "rc": int(rc), "job_s": round(t1 - t0, 2), "phases": per_phase,
                     "card_peak_gib": max((p["card_peak_gib"] or 0) for p in per_phase),
                     "host_rss_peak_gib": round(max(r for r, _ in host) / GIB, 3) if host else None,
                     "host_rss_peak_split_gib": split})
    hwm = max((h for _, _, h, _ in rss), default=0)
    idle = [r for t, r, _, _ in rss][:5]
    mem = cfg.get("memory", {})
    return {"config": name, "memory": mem, "executor": cfg.get("executor", {}),
            "daemon_vmhwm_gib": round(hwm / GIB, 3),
            "daemon_rss_ready_gib": round(min(idle) / GIB, 3) if idle else None, "jobs": jobs}


def main():
    work, names = sys.argv[1], sys.argv[2:]
    res = {n: summarize(work, n) for n in names}
    ratios = {}
    if "streamed" in res and "resident" in res:
        base = {j["job"]: j for j in res["resident"]["jobs"]}
        for j in res["streamed"]["jobs"]:
            b = base.get(j["job"])
            if b and b["rc"] == 0 and j["rc"] == 0:
                ratios[j["job"]] = round(j["job_s"] / b["job_s"], 4)
    out = {"configs": res, "job_time_ratio_streamed_over_resident": ratios}
    json.dump(out, open(os.path.join(work, "summary.json"), "w"), indent=1)
    lines = []
    for n, r in res.items():
        lines.append(f"### {n}: daemon VmHWM {r['daemon_vmhwm_gib']} GiB (VmRSS when ready "
                     f"{r['daemon_rss_ready_gib']} GiB); memory {json.dumps(r['memory'])}; "
                     f"executor {json.dumps(r['executor'])}")
        lines.append("")
        lines.append("| job | rc | job s | card peak GiB | host RSS peak GiB (anon / file / shmem) | "
                     "phases (s / card peak GiB / host RSS peak GiB) |")
        lines.append("|---|---|---|---|---|---|")
        for j in r["jobs"]:
            ph = ", ".join(f"{p['phase']} {p['s']} s / {p['card_peak_gib']} / {p['host_rss_peak_gib']}"
                           for p in j["phases"])
            sp = j.get("host_rss_peak_split_gib") or {}
            split = " / ".join(str(sp.get(k)) for k in ("RssAnon", "RssFile", "RssShmem"))
            lines.append(f"| {j['job']} | {j['rc']} | {j['job_s']} | {j['card_peak_gib']} | "
                         f"{j['host_rss_peak_gib']} ({split}) | {ph} |")
        lines.append("")
    if ratios:
        lines.append("Whole-job time, streamed / resident: " + ", ".join(f"{k} x{v}" for k, v in ratios.items()))
    open(os.path.join(work, "summary.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
