#!/usr/bin/env python3
"""Joins each peer's events with the card and host samples of run-peers.sh:

    summarize.py RESULTS [--wand E2E_SUMMARY_JSON] [--wand-config streamed] [--wand-job TAG]

Per peer (RESULTS/<peer>/): events.jsonl and result.json (the launcher), smi.csv (nvidia-smi
timestamp, MiB used, 10 Hz), rss.txt ("epoch VmRSS: N kB VmHWM: N kB" of the peer's process,
10 Hz), time.txt (/usr/bin/time -v, when present), run.txt ("t0 t1 rc" around the process).
Writes RESULTS/summary.json and RESULTS/summary.md: seconds per step (each step from its first
model call, expert swap included, to the end of the scheduler step), the whole process (what a
user waits for: start to video file), the model load, the job after the load, each phase's time
and card peak, the card peak (nvidia-smi: the whole card, not the allocator's view) and the host
peak (the largest of VmHWM, /usr/bin/time's maximum RSS and ru_maxrss). With --wand, the same
job of bench/e2e (its summary.json) is set beside them.
"""
import argparse
import datetime as dt
import json
import os
import re
import time

GIB = 1024 ** 3
PHASES = ["load", "text", "encode", "steps", "decode", "save"]


def local_epoch(s, fmt):
    d = dt.datetime.strptime(s, fmt)
    return time.mktime(d.timetuple()) + d.microsecond / 1e6


def read_smi(path):
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        try:
            out.append((local_epoch(parts[0], "%Y/%m/%d %H:%M:%S.%f"), int(parts[1]) * 1024 * 1024))
        except ValueError:
            continue
    return out


def read_rss(path):
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        f = line.split()
        try:
            t = float(f[0])
            vals = {f[i].rstrip(":"): int(f[i + 1]) * 1024 for i in range(1, len(f) - 2, 3)}
        except (ValueError, IndexError):
            continue
        out.append((t, vals.get("VmRSS", 0), vals.get("VmHWM", 0), vals.get("RssAnon", 0), vals.get("RssFile", 0)))
    return out


def read_time_v(path):
    if not os.path.exists(path):
        return {}
    txt = open(path, errors="replace").read()
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", txt)
    if m:
        out["max_rss_gib"] = round(int(m.group(1)) * 1024 / GIB, 3)
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", txt)
    if m:
        s = 0.0
        for part in m.group(1).split(":"):
            s = s * 60 + float(part)
        out["wall_s"] = round(s, 2)
    m = re.search(r"Exit status: (\d+)", txt)
    if m:
        out["exit_status"] = int(m.group(1))
    m = re.search(r"Command terminated by signal (\d+)", txt)
    if m:
        out["signal"] = int(m.group(1))
    return out


def read_events(path):
    if not os.path.exists(path):
        return []
    evs = []
    for line in open(path, errors="replace"):
        try:
            evs.append(json.loads(line))
        except ValueError:
            continue
    return evs


def spans_of(evs):
    """{phase: [(start, end)]} from begin/end pairs (a phase may occur several times)."""
    open_, spans = {}, {}
    for e in evs:
        if e["kind"] == "begin":
            open_.setdefault(e["name"], []).append(e["t"])
        elif e["kind"] == "end" and open_.get(e["name"]):
            spans.setdefault(e["name"], []).append((open_[e["name"]].pop(), e["t"]))
    return spans


def steps_of(evs):
    steps, cur = [], {}
    for e in evs:
        if e["kind"] == "step_begin":
            cur = {"index": e["index"], "expert": e.get("expert"), "start": e["t"]}
        elif e["kind"] == "swap" and cur.get("index") == e.get("index"):
            cur["swap_s"] = round(e["s"], 3)
        elif e["kind"] == "step_end" and cur.get("index") == e.get("index"):
            cur["end"] = e["t"]
            cur["s"] = round(cur["end"] - cur["start"], 3)
            steps.append(cur)
            cur = {}
    return steps


def peak(samples, spans, col=1):
    vals = [s[col] for s in samples if any(a <= s[0] <= b for a, b in spans)]
    return round(max(vals) / GIB, 3) if vals else None


def summarize_peer(d):
    res = json.load(open(os.path.join(d, "result.json"))) if os.path.exists(os.path.join(d, "result.json")) else {}
    evs = read_events(os.path.join(d, "events.jsonl"))
    smi = read_smi(os.path.join(d, "smi.csv"))
    rss = read_rss(os.path.join(d, "rss.txt"))
    tv = read_time_v(os.path.join(d, "time.txt"))
    run = open(os.path.join(d, "run.txt")).read().split() if os.path.exists(os.path.join(d, "run.txt")) else []
    t0, t1, rc = (float(run[0]), float(run[1]), int(run[2])) if len(run) == 3 else (None, None, None)
    spans = spans_of(evs)
    steps = steps_of(evs)
    if steps:
        spans["steps"] = [(steps[0]["start"], steps[-1]["end"])]
    whole = [(t0, t1)] if t0 is not None else [(evs[0]["t"], evs[-1]["t"])] if evs else []
    phases = []
    for name in PHASES + sorted(k for k in spans if k not in PHASES and k != "generate_py"):
        if name not in spans:
            continue
        sp = spans[name]
        phases.append({"phase": name, "s": round(sum(b - a for a, b in sp), 2), "count": len(sp),
                       "card_peak_gib": peak(smi, sp), "host_rss_peak_gib": peak(rss, sp)})
    idle = [u for t, u in smi if t0 is not None and t < t0]
    hosts = [v for v in (tv.get("max_rss_gib"), res.get("ru_maxrss_gib"),
                         round(max((r[2] for r in rss), default=0) / GIB, 3) or None) if v]
    load_s = next((p["s"] for p in phases if p["phase"] == "load"), None)
    load_end = max((b for a, b in spans.get("load", [])), default=None)
    job_end = max([b for n in ("save", "decode") for a, b in spans.get(n, [])], default=None)
    step_s = [s["s"] for s in steps]
    steady = [s["s"] for i, s in enumerate(steps) if i > 0 and s["expert"] == steps[i - 1]["expert"]]
    out = {
        "peer": res.get("peer", os.path.basename(d)), "mode": res.get("config", {}).get("mode"),
        "status": res.get("status", "no result.json (killed?)"), "rc": rc,
        "error": res.get("error"), "traceback_tail": res.get("traceback_tail"),
        "notes": res.get("notes", []), "attention": res.get("attention"), "config": res.get("config"),
        "process_s": round(t1 - t0, 2) if t0 is not None else None,
        "load_s": load_s,
        "job_after_load_s": round(job_end - load_end, 2) if job_end and load_end else None,
        "steps": steps, "step_count": len(steps),
        "s_per_step": round(sum(step_s) / len(step_s), 3) if step_s else None,
        "s_per_step_steady": round(sum(steady) / len(steady), 3) if steady else None,
        "experts": "".join((s["expert"] or "?")[0] for s in steps),
        "phases": phases,
        "card_peak_gib": peak(smi, whole), "card_idle_gib": round(max(idle) / GIB, 3) if idle else None,
        "card_samples": len(smi),
        "host_peak_gib": max(hosts) if hosts else None,
        "host_peak_sources": {"time_v_max_rss_gib": tv.get("max_rss_gib"), "ru_maxrss_gib": res.get("ru_maxrss_gib"),
                              "vmhwm_sampled_gib": round(max((r[2] for r in rss), default=0) / GIB, 3)},
        # RSS counts the pages of mmap'd checkpoint files too (RssFile: page cache, reclaimable);
        # RssAnon is the process's own memory (pinned host memory included).
        "host_anon_peak_gib": round(max((r[3] for r in rss), default=0) / GIB, 3) or None,
        "host_file_peak_gib": round(max((r[4] for r in rss), default=0) / GIB, 3) or None,
        "torch_max_allocated_gib": res.get("torch_max_allocated_gib"),
        "torch_max_reserved_gib": res.get("torch_max_reserved_gib"),
        "time_v": tv,
    }
    return out


def wand_row(path, config, job):
    s = json.load(open(path))
    c = s["configs"].get(config)
    if not c:
        return None
    j = next((j for j in c["jobs"] if j["job"] == job), None)
    if not j:
        return None
    ph = {p["phase"]: p for p in j["phases"]}
    steps_s = ph.get("steps", {}).get("s")
    return {"peer": f"wand ({config})", "mode": json.dumps(c.get("executor", {})), "status": "ok" if j["rc"] == 0
            else f"rc {j['rc']}", "process_s": j["job_s"], "s_per_step_phase_s": steps_s,
            "phases": j["phases"], "card_peak_gib": j["card_peak_gib"],
            "host_peak_gib": c.get("daemon_vmhwm_gib"), "job": job}


def fmt(v):
    return "-" if v is None else str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--wand", default=None)
    ap.add_argument("--wand-config", default="streamed")
    ap.add_argument("--wand-job", default=None)
    ap.add_argument("--steps", type=int, default=None)
    a = ap.parse_args()
    peers = []
    for name in sorted(os.listdir(a.results)):
        d = os.path.join(a.results, name)
        if os.path.isdir(d) and any(os.path.exists(os.path.join(d, f)) for f in ("events.jsonl", "run.txt",
                                                                                 "result.json")):
            peers.append(summarize_peer(d))
    prep = os.path.join(a.results, "prepare.json")
    machine = os.path.join(a.results, "machine.txt")
    out = {"peers": peers, "prepare": json.load(open(prep)) if os.path.exists(prep) else None,
           "machine": open(machine).read().strip() if os.path.exists(machine) else None}
    wand = None
    if a.wand and os.path.exists(a.wand) and a.wand_job:
        wand = wand_row(a.wand, a.wand_config, a.wand_job)
        out["wand"] = wand
    json.dump(out, open(os.path.join(a.results, "summary.json"), "w"), indent=1)

    L = [f"Card: {out['machine'] or '?'}", ""]
    L.append("| peer | mode | status | steps (experts) | s / step (mean; same-expert) | whole process s | load s "
             "| after load s | card peak GiB (idle) | host peak GiB (anon) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for p in peers:
        L.append(f"| {p['peer']} | {fmt(p['mode'])} | {p['status']} | {p['step_count']} ({p['experts'] or '-'}) | "
                 f"{fmt(p['s_per_step'])}; {fmt(p['s_per_step_steady'])} | {fmt(p['process_s'])} | {fmt(p['load_s'])} | "
                 f"{fmt(p['job_after_load_s'])} | {fmt(p['card_peak_gib'])} ({fmt(p['card_idle_gib'])}) | "
                 f"{fmt(p['host_peak_gib'])} ({fmt(p['host_anon_peak_gib'])}) |")
    if wand:
        per = round(wand["s_per_step_phase_s"] / a.steps, 3) if wand["s_per_step_phase_s"] and a.steps else None
        L.append(f"| {wand['peer']} | wanctl generate | {wand['status']} | {fmt(a.steps)} | {fmt(per)} (steps phase / "
                 f"steps) | {fmt(wand['process_s'])} (job) | - | - | {fmt(wand['card_peak_gib'])} | "
                 f"{fmt(wand['host_peak_gib'])} (daemon VmHWM) |")
    L.append("")
    for p in peers:
        L.append(f"### {p['peer']} ({fmt(p['mode'])}): {p['status']}")
        if p["error"]:
            L.append(f"- error: `{p['error']}`")
        if p["attention"]:
            L.append(f"- attention: {p['attention']}")
        for n in p["notes"]:
            L.append(f"- note: {n}")
        if p["phases"]:
            L.append("- phases (s / card peak GiB / host RSS peak GiB): " + ", ".join(
                f"{x['phase']} {x['s']} / {fmt(x['card_peak_gib'])} / {fmt(x['host_rss_peak_gib'])}"
                for x in p["phases"]))
        if p["steps"]:
            L.append("- steps: " + ", ".join(
                f"{s['index']}:{s['expert']} {s['s']} s" + (f" (swap {s['swap_s']})" if "swap_s" in s else "")
                for s in p["steps"]))
        if p["traceback_tail"]:
            L.append("- traceback tail:")
            L.append("```")
            L.extend(p["traceback_tail"][-12:])
            L.append("```")
        L.append("")
    if out["prepare"]:
        pr = out["prepare"]
        L.append(f"prepare: tokenizer {pr.get('tokenizer', {}).get('route')}; problems: {pr.get('problems') or 'none'}")
        for n in pr.get("notes", []):
            L.append(f"- {n}")
    open(os.path.join(a.results, "summary.md"), "w").write("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
