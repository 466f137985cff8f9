#!/usr/bin/env python3
"""Issue 15 probes, re-run after the fix: the figures of the closing note.

  python3 bench/hardening_probe.py --build build [--out bench/results/hardening-DATE.md]

Starts the `wand` of the build (tiny-t2v from wand-make-model, CPU) on a temporary
socket and state dir and measures:
  1. connections: 512 idle connections (no hello) and a hello sent at 1 byte/s; whether
     a new client gets in, what it is told meanwhile, and how long the idle ones are held.
     Run as root, also 512 idle connections of another uid (nobody, a non-admin): the
     admin must still get in at once and another non-admin must get too_many_clients;
  2. RSS under a header flood: 500 connections each sending hello + a 4-byte
     "8 MiB coming" header and nothing more (how many were admitted, how long the
     half frames are held); then one client that sends `list` requests for 5 s and
     reads none of the replies;
  3. the poison job (tiny-t2v 4096x4096, 4093 frames): refused at submit?
  4. ENOSPC: a running job while the disk-full fault is on (WAND_FAULT_DISK_FULL_FILE:
     every durable write fails with ENOSPC while the file exists), a submit, a list, a
     restart on the full disk (is the journal rewritten? is a stale *.ckpt.tmp removed?),
     then space again: every acknowledged job done?
  5. a second daemon on the same state dir: exit status and message.
Needs no root (the non-admin part of 1 is skipped without it).
"""
import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
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
    """One request on a fresh connection; an error in place of the hello reply
    (too_many_clients, timeout, ...) is returned as the answer."""
    s = connect(path)
    try:
        s.sendall(frame({"type": "hello", "version": 1}))
        h = recv_frame(s, timeout)
        if h is None:
            return {"type": "error", "code": "closed before the hello reply"}
        if h.get("type") != "hello":
            return h
        s.sendall(frame(req))
        return recv_frame(s, timeout)
    finally:
        s.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def held_until_closed(socks, t0, limit):
    """Reads each socket until EOF (or limit s after t0); returns the seconds after t0
    at which each was closed by the daemon (None: still open at the limit)."""
    out = []
    for s in socks:
        closed_at = None
        while time.time() - t0 < limit:
            s.settimeout(max(0.1, limit - (time.time() - t0)))
            try:
                if not s.recv(65536):
                    closed_at = time.time() - t0
                    break
            except socket.timeout:
                break
            except OSError:
                closed_at = time.time() - t0
                break
        out.append(closed_at)
        s.close()
    return out


class Daemon:
    def __init__(self, exe, tmp, model, env=None, extra=None):
        self.exe, self.tmp, self.model = exe, tmp, model
        self.sock = os.path.join(tmp, "wand.sock")
        self.state = os.path.join(tmp, "state")
        self.env = dict(os.environ, **(env or {}))
        self.extra = extra or []
        self.proc = None

    def args(self, sock=None):
        return [self.exe, "--socket", sock or self.sock, "--state-dir", self.state,
                "--model", "tiny=" + self.model] + self.extra

    def start(self):
        self.log = open(os.path.join(self.tmp, "wand.log"), "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=self.log, env=self.env)
        for _ in range(300):
            try:
                if call(self.sock, {"type": "list"}, timeout=5).get("type") == "jobs":
                    return
            except (OSError, AttributeError):
                pass
            time.sleep(0.1)
        raise RuntimeError("wand did not start")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def wait_state(d, jid, states, secs=120):
    end = time.time() + secs
    r = {}
    while time.time() < end:
        r = call(d.sock, {"type": "status", "job": jid})
        if r.get("state") in states:
            return r
        time.sleep(0.2)
    return r


NOBODY = 65534
HOLD_SCRIPT = r"""
import os, socket, struct, json, sys, time
os.setgid(%d); os.setuid(%d)
path, n = sys.argv[1], int(sys.argv[2])
socks, refused = [], 0
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path); socks.append(s)
time.sleep(0.5)
for s in socks:  # a refused one has an error frame waiting, then EOF
    s.setblocking(False)
    try:
        if s.recv(4096)[4:].find(b"too_many_clients") >= 0: refused += 1
    except BlockingIOError:
        pass
print(json.dumps({"refused": refused}), flush=True)
if n == 1: sys.exit(0)
sys.stdin.read()
""" % (NOBODY, NOBODY)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--out")
    a = ap.parse_args()
    exe = os.path.join(a.build, "daemon", "wand")
    mk = os.path.join(a.build, "model", "wand-make-model")
    root = os.geteuid() == 0
    tmp = tempfile.mkdtemp(prefix="wand-probe-")
    started = time.gmtime()
    model = os.path.join(tmp, "tiny-t2v")
    subprocess.run([mk, "--preset", "tiny-t2v", "--out", model, "--seed", "1"], check=True, capture_output=True)
    full = os.path.join(tmp, "disk-full")
    extra = []
    if root:  # let uid nobody reach the socket (the private temp dir stays unlistable)
        os.chmod(tmp, 0o711)
        extra = ["--socket-mode", "0666"]
    d = Daemon(exe, tmp, model, {"WAND_FAULT_DISK_FULL_FILE": full}, extra)
    d.start()
    res = {}

    # 1a. 512 idle connections of the daemon's own uid (an admin: all max_clients = 512 slots),
    #     plus one hello sent at 1 byte/s.
    slow_closed = {}

    def slow_hello():
        s = connect(d.sock)
        t = time.time()
        for b in frame({"type": "hello", "version": 1}):
            try:
                s.send(bytes([b]))
                s.settimeout(1.0)
                if not s.recv(4096):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        # the reply (timeout error) or EOF came: read to EOF
        held_until_closed([s], t, 60)
        slow_closed["s"] = round(time.time() - t, 1)

    th = threading.Thread(target=slow_hello)
    th.start()
    time.sleep(0.2)
    idle = [connect(d.sock) for _ in range(512)]
    t0 = time.time()
    answers = []
    got_in = None
    while time.time() - t0 < 40:
        try:
            r = call(d.sock, {"type": "list"}, timeout=20)
        except OSError as e:
            r = {"type": "error", "code": "os: " + str(e)}
        answers.append((r or {}).get("code") or (r or {}).get("type"))
        if r and r.get("type") == "jobs":
            got_in = time.time() - t0
            break
        time.sleep(0.2)
    held = held_until_closed(idle, t0, 40)
    th.join()
    res["connections_admin_flood"] = {
        "new_admin_client_first_answer": answers[0] if answers else None,
        "new_admin_client_in_after_s": round(got_in, 2) if got_in is not None else None,
        "idle_connections_closed": sum(h is not None for h in held),
        "idle_connections_held_max_s": round(max(h for h in held if h is not None), 1) if any(held) else None,
        "slow_hello_1_byte_per_s_closed_after_s": slow_closed.get("s"),
    }

    # 1b. (root) 512 idle connections of uid nobody: the admin reserve.
    if root:
        hold = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, d.sock, "512"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        flood_refused = json.loads(hold.stdout.readline())["refused"]
        t1 = time.time()
        r = call(d.sock, {"type": "list"}, timeout=5)
        admin_s = time.time() - t1
        other = subprocess.run([sys.executable, "-c", HOLD_SCRIPT, d.sock, "1"], capture_output=True, text=True)
        res["connections_nonadmin_flood"] = {
            "nonadmin_connections_refused_of_512": flood_refused,
            "admin_answer": r.get("type") if r.get("type") != "error" else r.get("code"),
            "admin_answer_s": round(admin_s, 3),
            "another_nonadmin_refused_too_many_clients": json.loads(other.stdout or "{}").get("refused") == 1,
        }
        hold.stdin.close()
        hold.wait(30)
        time.sleep(1.0)

    # 2. Header flood: 500 x (hello + "8 MiB coming").
    time.sleep(0.5)
    before = rss_kib(d.proc.pid)
    flood = []
    admitted = 0
    t_flood = time.time()
    for _ in range(500):
        s = connect(d.sock)
        s.sendall(frame({"type": "hello", "version": 1}) + struct.pack(">I", 8 << 20))
        flood.append(s)
    for s in flood:
        h = recv_frame(s, 10)
        admitted += bool(h and h.get("type") == "hello")
    t2 = time.time()
    peak = before
    while time.time() - t2 < 3:
        peak = max(peak, rss_kib(d.proc.pid))
        time.sleep(0.1)
    res["header_flood"] = {
        "connections_admitted_of_500": admitted,
        "rss_before_mib": round(before / 1024, 1), "rss_flood_peak_mib": round(peak / 1024, 1),
        "rss_delta_mib": round((peak - before) / 1024, 1),
    }
    fheld = held_until_closed(flood, t_flood, 60)  # the frame timeout (30 s) closes them
    res["header_flood"]["half_frames_closed"] = sum(h is not None for h in fheld)
    res["header_flood"]["half_frames_held_max_s"] = round(max(h for h in fheld if h is not None), 1) if any(fheld) else None

    # 2b. A client that sends `list` requests for 5 s and reads no reply.
    time.sleep(0.5)
    before = rss_kib(d.proc.pid)
    s = connect(d.sock)
    s.sendall(frame({"type": "hello", "version": 1}))
    recv_frame(s, 10)
    s.setblocking(False)
    req = frame({"type": "list"})
    sent, pending, t3 = 0, b"", time.time()
    while time.time() - t3 < 5:
        if not pending:
            pending = req
        try:
            n = s.send(pending)
            pending = pending[n:]
            if not pending:
                sent += 1
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    peak = rss_kib(d.proc.pid)
    res["unread_replies"] = {"list_requests_sent_in_5s": sent, "rss_delta_mib": round((peak - before) / 1024, 1)}
    s.close()

    # 3. The poison job.
    r = call(d.sock, {"type": "submit", "job": {"model": "tiny", "prompt": "x", "width": 4096, "height": 4096,
                                                  "frames": 4093, "steps": 1}})
    res["poison"] = {"type": r.get("type"), "code": r.get("code"), "message": r.get("message")}
    res["poison"]["daemon_alive"] = d.alive()

    # 4. ENOSPC.
    journal = os.path.join(d.state, "journal.jsonl")
    job = {"model": "tiny", "prompt": "a lighthouse", "width": 64, "height": 64, "frames": 5, "steps": 30, "seed": 3}
    a_id = call(d.sock, {"type": "submit", "job": job})["id"]
    wait_state(d, a_id, ["running"])
    end = time.time() + 120
    while call(d.sock, {"type": "status", "job": a_id}).get("step", 0) < 2 and time.time() < end:
        time.sleep(0.05)
    open(full, "w").close()
    paused = wait_state(d, a_id, ["queued", "done", "failed"], 30)
    sub = call(d.sock, {"type": "submit", "job": job})
    lst = call(d.sock, {"type": "list"})
    st = call(d.sock, {"type": "status", "job": a_id})
    alive_full = d.alive()
    stop_rc = d.stop()
    ck = os.path.join(d.state, "checkpoints")
    os.makedirs(ck, exist_ok=True)
    stale = os.path.join(ck, "j-99.ckpt.tmp")  # what a crash in the middle of a checkpoint write leaves
    with open(stale, "wb") as f:
        f.write(b"half a checkpoint")
    def journal_id():  # a rewrite (write temp + rename) gives a new inode; an append, new bytes
        with open(journal, "rb") as f:
            return os.stat(journal).st_ino, hashlib.sha256(f.read()).hexdigest()
    j_before = journal_id()
    d.start()  # on the full disk
    after_restart = call(d.sock, {"type": "status", "job": a_id})
    time.sleep(1.0)
    j_after = journal_id()
    os.unlink(full)
    done = wait_state(d, a_id, ["done", "failed"], 300)
    b = call(d.sock, {"type": "submit", "job": dict(job, steps=3)})
    b_done = wait_state(d, b["id"], ["done", "failed"], 300) if b.get("id") else b
    jobs = call(d.sock, {"type": "list"}).get("jobs", [])
    tmp_files = [os.path.join(r_, f) for r_, _, fs in os.walk(d.state) for f in fs if f.endswith(".tmp")]
    res["enospc"] = {
        "running_job_while_full": paused.get("state"), "its_note": paused.get("error"),
        "submit_while_full": sub.get("code") or sub.get("type"), "submit_message": sub.get("message"),
        "list_while_full": lst.get("type"), "status_while_full": st.get("type"),
        "daemon_alive_while_full": alive_full,
        "sigterm_exit_while_full": stop_rc,
        "restart_on_full_disk": after_restart.get("type"),
        "journal_rewritten_at_restart": j_before[0] != j_after[0],
        "journal_bytes_changed_at_restart": j_before[1] != j_after[1],
        "stale_ckpt_tmp_removed_at_start": not os.path.exists(stale),
        "job_after_space": done.get("state"), "resumed_from_step": done.get("resumed_from_step"),
        "later_job": b_done.get("state"),
        "acknowledged_jobs": len(jobs), "acknowledged_jobs_done": sum(j.get("state") == "done" for j in jobs),
        "tmp_files_left": len(tmp_files),
    }

    # 5. Second daemon on the same state dir.
    p = subprocess.run(d.args(os.path.join(tmp, "other.sock")), capture_output=True, text=True, timeout=60)
    res["second_daemon"] = {"exit": p.returncode, "message": (p.stderr.strip().splitlines() or [""])[-1]}
    res["second_daemon"]["first_still_serves"] = call(d.sock, {"type": "list"}).get("type")
    d.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if a.out:
        write_md(a, res, started, root)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            osname = next(l.split("=", 1)[1].strip().strip('"') for l in f if l.startswith("PRETTY_NAME"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%s, kernel %s, %d CPU cores (%s), %.1f GiB RAM, no GPU (CPU tiers)" % (
        osname, platform.release(), os.cpu_count(), cpu, mem)


def write_md(a, res, started, root):
    r = res
    c, f, u, e, s2 = (r["connections_admin_flood"], r["header_flood"], r["unread_replies"], r["enospc"],
                      r["second_daemon"])
    rows = [
        ("512 idle connections (own uid), then a new client",
         "every new client locked out; nothing timed out",
         "first answer `%s`; in after %s s; %d/512 idle closed, held at most %s s"
         % (c["new_admin_client_first_answer"], c["new_admin_client_in_after_s"], c["idle_connections_closed"],
            c["idle_connections_held_max_s"])),
        ("hello at 1 byte/s", "accepted after 32 s", "closed after %s s" % c["slow_hello_1_byte_per_s_closed_after_s"]),
    ]
    if "connections_nonadmin_flood" in r:
        n = r["connections_nonadmin_flood"]
        rows.append(("512 idle connections of uid nobody (non-admin), then an admin and another non-admin",
                     "(not probed)", "%d of the 512 refused; admin answered `%s` in %s s; other non-admin "
                     "refused with too_many_clients: %s" % (n["nonadmin_connections_refused_of_512"], n["admin_answer"],
                                                           n["admin_answer_s"], n["another_nonadmin_refused_too_many_clients"])))
    rows += [
        ("RSS, 500 x hello + \"8 MiB coming\"", "+2.6 GiB; a half frame sat 20 s",
         "%d/500 admitted; %s -> %s MiB (+%s MiB); %d/500 half frames closed, at most %s s"
         % (f["connections_admitted_of_500"], f["rss_before_mib"], f["rss_flood_peak_mib"], f["rss_delta_mib"],
            f["half_frames_closed"], f["half_frames_held_max_s"])),
        ("`list` requests never read", "200k unread replies: +658 MiB",
         "%d requests sent in 5 s; RSS +%s MiB" % (u["list_requests_sent_in_5s"], u["rss_delta_mib"])),
        ("poison job tiny-t2v 4096x4096x4093", "accepted; daemon OOM-killed (3 of 3 restarts)",
         "`%s` %s; daemon alive: %s" % (r["poison"]["code"] or r["poison"]["type"], r["poison"]["message"],
                                      r["poison"]["daemon_alive"])),
        ("ENOSPC: running job", "std::terminate (4 of 4 fill levels)",
         "job `%s`, note \"%s\"; daemon alive: %s" % (e["running_job_while_full"], e["its_note"], e["daemon_alive_while_full"])),
        ("ENOSPC: submit / list / status", "(daemon dead)",
         "submit `%s` (%s); list `%s`; status `%s`" % (e["submit_while_full"], e["submit_message"], e["list_while_full"],
                                                     e["status_while_full"])),
        ("ENOSPC: SIGTERM, restart on the full disk", "restart refused (every start rewrote the journal)",
         "exit %s; restart answers `%s`; journal rewritten (new inode): %s, its bytes changed: %s; "
         "stale j-99.ckpt.tmp removed: %s"
         % (e["sigterm_exit_while_full"], e["restart_on_full_disk"], e["journal_rewritten_at_restart"],
            e["journal_bytes_changed_at_restart"], e["stale_ckpt_tmp_removed_at_start"])),
        ("ENOSPC: space again", "jobs failed for good on the transient error; *.ckpt.tmp stayed",
         "paused job `%s` (resumed from step %s); later job `%s`; %d/%d acknowledged jobs done; %d *.tmp left"
         % (e["job_after_space"], e["resumed_from_step"], e["later_job"], e["acknowledged_jobs_done"],
            e["acknowledged_jobs"], e["tmp_files_left"])),
        ("second daemon on the same state dir", "started, rewrote the journal, both handed out j-1..",
         "exit %s: \"%s\"; first still serves: `%s`" % (s2["exit"], s2["message"], s2["first_still_serves"])),
    ]
    with open(a.out, "w") as fo:
        fo.write("# Issue 15 probes after the fix\n\n")
        fo.write("- Date: %s\n" % time.strftime("%Y-%m-%d %H:%M UTC", started))
        fo.write("- Machine: %s\n" % machine())
        fo.write("- Command: `python3 bench/hardening_probe.py --build %s --out %s`%s\n"
                 % (a.build, a.out, " (as root: the non-admin flood ran as uid nobody)" if root else ""))
        fo.write("- Daemon: tiny-t2v from wand-make-model, CPU, default client limits (max_clients 512, "
                 "admin_reserve 8, hello 10 s, frame 30 s, idle 300 s); the full disk is the fault "
                 "WAND_FAULT_DISK_FULL_FILE (every durable write fails with ENOSPC while the file exists), "
                 "not a real full file system.\n\n")
        fo.write("| probe | before (issue 15 text, at 2c18d95) | now |\n|---|---|---|\n")
        for p, b, n in rows:
            fo.write("| %s | %s | %s |\n" % (p, b, n.replace("|", "/")))
        fo.write("\nRaw figures:\n\n```json\n%s\n```\n" % json.dumps(res, indent=2))


if __name__ == "__main__":
    sys.exit(main())
