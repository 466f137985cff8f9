#!/usr/bin/env python3
"""Issue 15 probes, re-run after the fix: the figures of the closing note.

  python3 bench/hardening_probe.py --build build [--out bench/results/hardening-DATE.md]

Starts the `wand` of the build (tiny-t2v from wand-make-model, CPU) on a temporary
socket and state dir and measures:
  1. connections: 512 idle connections (no hello); whether a new client gets in,
     and how long the idle ones are held;
  2. RSS under a header flood: 500 connections each sending hello + a 4-byte
     "8 MiB coming" header and nothing more;
  3. the poison job (tiny-t2v 4096x4096, 4093 frames): refused at submit?
  4. ENOSPC: a running job while the disk-full fault is on (WAND_FAULT_DISK_FULL_FILE),
     a submit, a list, a restart on the full disk, then space again: every job done?
  5. a second daemon on the same state dir: exit status and message.
Needs no root.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def recv_frame(s, timeout=30):
    s.settimeout(timeout)
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    (n,) = struct.unpack(">I", hdr)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def call(path, req, timeout=30):
    s = connect(path)
    s.sendall(frame({"type": "hello", "version": 1}))
    recv_frame(s, timeout)
    s.sendall(frame(req))
    r = recv_frame(s, timeout)
    s.close()
    return r


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Daemon:
    def __init__(self, exe, tmp, model, env=None):
        self.exe, self.tmp, self.model = exe, tmp, model
        self.sock = os.path.join(tmp, "wand.sock")
        self.state = os.path.join(tmp, "state")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def args(self, sock=None):
        return [self.exe, "--socket", sock or self.sock, "--state-dir", self.state, "--model", "tiny=" + self.model]

    def start(self):
        self.log = open(os.path.join(self.tmp, "wand.log"), "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=self.log, env=self.env)
        for _ in range(300):
            try:
                call(self.sock, {"type": "list"}, timeout=5)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("wand did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def wait_state(d, jid, states, secs=120):
    end = time.time() + secs
    r = None
    while time.time() < end:
        r = call(d.sock, {"type": "status", "job": jid})
        if r.get("state") in states:
            return r
        time.sleep(0.2)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--out")
    a = ap.parse_args()
    exe = os.path.join(a.build, "daemon", "wand")
    mk = os.path.join(a.build, "model", "wand-make-model")
    tmp = tempfile.mkdtemp(prefix="wand-probe-")
    model = os.path.join(tmp, "tiny-t2v")
    subprocess.run([mk, "--preset", "tiny-t2v", "--out", model, "--seed", "1"], check=True, capture_output=True)
    full = os.path.join(tmp, "disk-full")
    d = Daemon(exe, tmp, model, {"WAND_FAULT_DISK_FULL_FILE": full})
    d.start()
    res = {}

    # 1. 512 idle connections (no hello), then a new client.
    idle = [connect(d.sock) for _ in range(512)]
    t0 = time.time()
    first = None
    while time.time() - t0 < 30:
        try:
            r = call(d.sock, {"type": "list"}, timeout=20)
        except OSError as e:
            r = {"type": "error", "code": str(e)}
        if first is None:
            first = (r or {}).get("code") or (r or {}).get("type")
        if r and r.get("type") == "jobs":
            break
        time.sleep(0.2)
    res["new_client_first_answer"] = first
    res["new_client_in_after_s"] = round(time.time() - t0, 2)
    for s in idle:
        s.settimeout(30)
    held = []
    for s in idle:
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        held.append(time.time() - t0)
        s.close()
    res["idle_connections_held_max_s"] = round(max(held), 1)

    # 2. Header flood: 500 x (hello + "8 MiB coming").
    time.sleep(0.5)
    before = rss_kib(d.proc.pid)
    flood = []
    for _ in range(500):
        s = connect(d.sock)
        s.sendall(frame({"type": "hello", "version": 1}) + struct.pack(">I", 8 << 20))
        flood.append(s)
    time.sleep(1.0)
    during = rss_kib(d.proc.pid)
    res["rss_before_kib"], res["rss_flood_kib"] = before, during
    res["rss_flood_delta_mib"] = round((during - before) / 1024, 1)
    for s in flood:
        s.close()

    # 3. The poison job.
    r = call(d.sock, {"type": "submit", "job": {"model": "tiny", "prompt": "x", "width": 4096, "height": 4096,
                                                  "frames": 4093, "steps": 1}})
    res["poison"] = {"code": r.get("code"), "message": r.get("message")}

    # 4. ENOSPC.
    job = {"model": "tiny", "prompt": "a lighthouse", "width": 64, "height": 64, "frames": 5, "steps": 30, "seed": 3}
    a_id = call(d.sock, {"type": "submit", "job": job})["id"]
    wait_state(d, a_id, ["running"])
    while call(d.sock, {"type": "status", "job": a_id}).get("step", 0) < 2:
        time.sleep(0.05)
    open(full, "w").close()
    paused = wait_state(d, a_id, ["queued", "done"], 30)
    sub = call(d.sock, {"type": "submit", "job": job})
    lst = call(d.sock, {"type": "list"})
    stop_rc = d.stop()
    d.start()  # on the full disk
    after_restart = call(d.sock, {"type": "status", "job": a_id})
    os.unlink(full)
    done = wait_state(d, a_id, ["done", "failed"], 300)
    b = call(d.sock, {"type": "submit", "job": dict(job, steps=3)})
    b_done = wait_state(d, b["id"], ["done", "failed"], 300) if b.get("id") else b
    tmp_files = [os.path.join(r_, f) for r_, _, fs in os.walk(d.state) for f in fs if f.endswith(".tmp")]
    res["enospc"] = {
        "running_job_while_full": paused.get("state"), "its_note": paused.get("error"),
        "submit_while_full": sub.get("code"), "list_while_full": lst.get("type"),
        "sigterm_exit_while_full": stop_rc, "restart_on_full_disk": after_restart.get("type"),
        "job_after_space": done.get("state"), "resumed_from_step": done.get("resumed_from_step"),
        "later_job": b_done.get("state"), "tmp_files_left": len(tmp_files),
    }

    # 5. Second daemon on the same state dir.
    p = subprocess.run(d.args(os.path.join(tmp, "other.sock")), capture_output=True, text=True, timeout=60)
    res["second_daemon"] = {"exit": p.returncode, "message": (p.stderr.strip().splitlines() or [""])[-1]}
    d.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            f.write("# Issue 15 probes after the fix\n\n")
            f.write("`python3 bench/hardening_probe.py --build build` (CPU, tiny-t2v from wand-make-model, fake disk-full "
                    "via WAND_FAULT_DISK_FULL_FILE), %s.\n\n```json\n%s\n```\n" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                                           json.dumps(res, indent=2)))


if __name__ == "__main__":
    sys.exit(main())
