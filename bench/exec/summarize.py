#!/usr/bin/env python3
"""Merges the JSON of bench_streamed_step ((a) resident vs (b) streamed, per size, with the
PyTorch-eager numbers run.sh adds) and bench_streamed_job ((c) the whole 40-step job and (a)'s
job in the same process) into one JSON, and writes the markdown summary: a table per case,
the ratios, each target of issue 6 item 6 met / missed / not measured, the planner's
predictions beside the measurements (null until scheduler/plan exists), the command, card, date.

  summarize.py --ab AB.json --c C.json --card NAME --command "..." --out-json X.json --out-md X.md
Either input may be missing (a partial run); the summary says what was not measured.
"""
import argparse, datetime, json, os, sys

GiB = float(1 << 30)


def load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def gib(b):
    return "—" if b is None else "%.2f" % (b / GiB)


def sec(s):
    return "—" if s is None else "%.3f" % s


def ratio(x, y):
    return None if x is None or not y else x / y


def verdict(ok):
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def planner_field(d, *keys):
    """A planner prediction, or None when the planner did not run (its block is null)."""
    p = (d or {}).get("planner")
    for k in keys:
        if not isinstance(p, dict):
            return None
        p = p.get(k)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ab")
    ap.add_argument("--c")
    ap.add_argument("--eager")
    ap.add_argument("--card", default="unknown")
    ap.add_argument("--command", default="")
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-md", required=True)
    a = ap.parse_args()
    ab, c, eager = load(a.ab), load(a.c), load(a.eager)
    date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    merged = {"card": a.card, "date": date, "command": a.command, "ab": ab, "c": c, "pytorch_eager_forward": eager, "targets": {}}
    t = merged["targets"]
    md = ["# Streamed A14B executor: (a) resident, (b) 24 GiB card (23 GiB budget), (c) the same + 32 GiB host",
          "", "Card: %s. Date: %s." % (a.card, date), "", "Command: `%s`" % a.command, ""]

    # ---- (a) / (b) per size
    if ab:
        md += ["## (a) all resident vs (b) streamed under %s GiB (one expert, %d blocks, %d frames)" %
               (gib(ab.get("budget_bytes")), ab.get("layers", 0), ab.get("frames", 0)), "",
               "| size | tokens | (a) forward s | (b) forward s | (b)/(a) fwd | (a) CFG step s | (b) CFG step s | "
               "(b)/(a) step | (b) wait s | (a) peak GiB | (b) peak GiB | (b) alloc peak GiB | PyTorch eager fwd s | planner (b) s/step | planner (b) peak GiB |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        ok_ratio, ok_peak = [], None
        for r in ab.get("results", []):
            res, st = r.get("resident") or {}, r.get("streamed") or {}
            rf = ratio(st.get("forward_s"), res.get("forward_s"))
            rs = ratio(st.get("cfg_step_s"), res.get("cfg_step_s"))
            for x in (rf, rs):
                if x is not None:
                    ok_ratio.append(x <= 1.02)
            if r.get("height") == 720 and st.get("peak_device_bytes"):
                ok_peak = st["peak_device_bytes"] <= 23 * GiB
            md.append("| %dx%d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r.get("width", 0), r.get("height", 0), r.get("tokens", 0), sec(res.get("forward_s")),
                sec(st.get("forward_s")), sec(rf), sec(res.get("cfg_step_s")), sec(st.get("cfg_step_s")), sec(rs),
                sec(st.get("cfg_step_wait_s")), gib(res.get("peak_device_bytes")), gib(st.get("peak_device_bytes")),
                gib(st.get("allocator_peak_reserved_bytes")), sec(r.get("pytorch_eager_forward_s")),
                sec(planner_field(r, "b", "step_s")), gib(planner_field(r, "b", "peak_device_bytes"))))
        t["b_over_a_le_1.02"] = (all(ok_ratio) if ok_ratio else None)
        t["b_peak_720p_le_23GiB"] = ok_peak
        weights = ab.get("host_weights_bytes") or (ab.get("store") or {}).get("bytes")
        rss = ab.get("host_peak_rss_bytes")
        t["b_host_le_weights_plus_5pct"] = (None if not weights or rss is None else rss <= 1.05 * weights)
        md += ["", "Host: VmHWM %s GiB for %s GiB of weights (%s expert(s)) in the host tier (%s x); expert read to pinned host at "
               "%s GB/s." % (gib(rss), gib(weights), ab.get("host_experts", 1), sec(ratio(rss, weights)), sec(ab.get("host_load_gbps"))), ""]
        if ab.get("host_rss_before_pool_bytes") is not None:
            md += ["Host RSS before the pool was made (LibTorch, CUDA, the non-block weights): %s GiB; host tier %s GiB." %
                   (gib(ab.get("host_rss_before_pool_bytes")), gib(ab.get("host_tier_bytes"))), ""]
        pe = ab.get("pytorch_eager")
        if pe:
            md += ["PyTorch eager: %s (torch %s on %s)." % (pe.get("note"), pe.get("torch"), pe.get("device")), ""]

    # ---- PyTorch eager, whole expert
    if eager:
        res_a = {r["tokens"]: r.get("resident") or {} for r in (ab or {}).get("results", [])}
        md += ["## PyTorch eager: %d blocks of one expert, all resident (%s, torch %s)" %
               (eager.get("layers", 0), eager.get("device"), eager.get("torch")), "",
               "| tokens | eager forward s | eager CFG step s | (a) C++ forward s | (a) / eager | eager peak GiB |",
               "|---|---|---|---|---|---|"]
        for r in eager.get("results", []):
            cf = res_a.get(r["tokens"], {}).get("forward_s")
            md.append("| %d | %s | %s | %s | %s | %s |" % (r["tokens"], sec(r.get("forward_s")), sec(r.get("cfg_step_s")),
                                                          sec(cf), sec(ratio(cf, r.get("forward_s"))),
                                                          gib(r.get("peak_allocated_bytes"))))
        md += ["", "(non-block parts excluded: %s)" % eager.get("note", ""), ""]

    # ---- (c)
    if c:
        cc, aa = c.get("c") or {}, c.get("a") or {}
        steps = c.get("steps", 0)
        # A benchmark process is a cold host tier: the planner's first-job floor (the DiT bytes of
        # that job at the calibrated disk rate); older JSONs have only the warm per-job floor.
        floor = planner_field(c, "disk_floor_first_job_s")
        floor_src = "planner, first job"
        if floor is None:
            floor, floor_src = planner_field(c, "disk_floor_s"), "planner"
        if floor is None and cc.get("disk_floor_s_at_measured_bw") is not None:
            floor, floor_src = cc["disk_floor_s_at_measured_bw"], "bytes / measured disk bandwidth (planner absent)"
        md += ["## (c) whole %d-step t2v job at %dx%d, %d frames: %s GiB VRAM, %s GiB host" %
               (steps, c.get("width", 0), c.get("height", 0), c.get("frames", 0), gib(c.get("budget_bytes")),
                gib(c.get("host_budget_bytes"))), "",
               "| | measured | planner (this job, these budgets) |", "|---|---|---|",
               "| whole job s (c) | %s | %s |" % (sec(cc.get("job_s")),
                                                  sec(planner_field(c, "first_job_s") or planner_field(c, "job_s"))),
               "| (a) job s = T5 + %d x (a) step + decode | %s | — |" % (steps, sec(aa.get("job_s"))),
               "| (a) CFG step s (same process) | %s | %s |" % (sec(aa.get("cfg_step_s")), sec(planner_field(c, "step_s"))),
               "| (c) mean step s | %s | — |" % sec(sum(cc.get("step_s", [])) / max(1, len(cc.get("step_s", [])))),
               "| T5 (from disk) s | %s | — |" % sec(cc.get("t5_s")),
               "| decode s | %s | — |" % sec(cc.get("decode_s")),
               "| bytes from disk GB | %s | %s |" % (
                   "%.1f" % ((cc.get("bytes_from_disk") or {}).get("total", 0) / 1e9),
                   "%.1f" % ((planner_field(c, "disk_bytes_first_job") or planner_field(c, "disk_bytes") or 0) / 1e9)),
               "| disk floor s (%s) | %s | %s |" % (floor_src, sec(floor), sec(planner_field(c, "disk_floor_s"))),
               "| peak VRAM GiB (cudaMemGetInfo) | %s | %s |" % (gib(cc.get("peak_device_bytes")),
                                                               gib(planner_field(c, "peak_device_bytes"))),
               "| peak VRAM by phase GiB (t5 / steps / decode) | %s / %s / %s | — |" % tuple(
                   gib((cc.get("peak_device_bytes_by_phase") or {}).get(k)) for k in ("t5", "steps", "decode")),
               "| LibTorch allocator peak GiB | %s | — |" % gib(cc.get("allocator_peak_reserved_bytes")),
               "| host VmHWM GiB | %s | — |" % gib(cc.get("host_peak_rss_bytes")), ""]
        eos = cc.get("expert_of_step") or []
        sw = cc.get("switch_step", next((k for k in range(1, len(eos)) if eos[k] != eos[k - 1]), -1))
        if c.get("partial"):
            md += ["**Partial (c): the run stopped after %d of %d steps.**" % (len(cc.get("step_s", [])), steps), ""]
        if cc.get("step_s"):
            md += ["Steps around the expert switch (step %d):" % sw, "", "| step | expert | s | wait s | disk->host GB |",
                   "|---|---|---|---|---|"]
            n = len(cc["step_s"])
            lo, hi = (max(0, sw - 3), sw + 3) if sw >= 0 else (0, 6)
            for k in sorted(set(k for k in [0, 1] + list(range(lo, hi)) + [n - 1] if 0 <= k < n)):
                md.append("| %d | %s | %s | %s | %.2f |" % (k, cc["expert_of_step"][k], sec(cc["step_s"][k]),
                                                           sec(cc["step_wait_s"][k]),
                                                           cc["step_disk_to_host_bytes"][k] / 1e9))
            md.append("")
        ok = None
        if cc.get("job_s") is not None and aa.get("job_s") is not None and floor is not None:
            ok = cc["job_s"] <= 1.10 * (aa["job_s"] + floor)
        t["c_job_le_1.1x_a_plus_floor"] = ok
        pk = cc.get("peak_device_bytes") or None  # 0: no cudaMemGetInfo (CPU run)
        t["c_peak_le_23GiB"] = (None if pk is None else pk <= 23 * GiB)
        if cc.get("job_s") is not None and aa.get("job_s") is not None and floor is not None:
            md += ["(c) / ((a) + floor) = %.3f (target <= 1.10)." % (cc["job_s"] / (aa["job_s"] + floor)), ""]

    md += ["## Targets (H100)", "", "| target | result |", "|---|---|",
           "| (b)/(a) <= 1.02 at both sizes (forward and CFG step) | %s |" % verdict(t.get("b_over_a_le_1.02")),
           "| peak VRAM <= 23 GiB at 720p in (b) | %s |" % verdict(t.get("b_peak_720p_le_23GiB")),
           "| peak VRAM <= 23 GiB in (c) (480p job) | %s |" % verdict(t.get("c_peak_le_23GiB")),
           "| host memory in (b) <= weights + 5%% | %s |" % verdict(t.get("b_host_le_weights_plus_5pct")),
           "| (c) job <= 1.1 x ((a) job + disk floor) | %s |" % verdict(t.get("c_job_le_1.1x_a_plus_floor")), ""]
    if planner_field(c, "job_s") is None and not any(planner_field(r, "b", "step_s") is not None
                                                     for r in (ab or {}).get("results", [])):
        md += ["Planner predictions: not available in this run (scheduler/plan absent); fields are null.", ""]
    with open(a.out_json, "w") as f:
        json.dump(merged, f, indent=1)
    with open(a.out_md, "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
