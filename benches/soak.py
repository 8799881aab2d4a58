#!/usr/bin/env python3
"""Soak test: does the broker stay healthy and bounded under sustained load and client churn?

Starts `fleetmq broker` (2 shards, persistence and archive on, /metrics) in a temporary data
directory on 127.0.0.1, then for SOAK_DURATION (default 5m) runs at the same time:

- the simulated fleet (`fleetmq simulate`, SOAK_VEHICLES x SOAK_SPEEDUP, QoS 1, archived);
- a latency probe (`fleetmq loadgen`, SOAK_PROBE_RATE msg/s, QoS 1, per-second percentiles);
- client churn: persistent-session subscribers (mosquitto_sub -c) killed with SIGTERM or
  SIGKILL and reconnected, publishers (some with a Will, some SIGKILLed, some retained) that
  come and go, clean-session subscribers that read the retained statuses and leave;
- two subscribers on fleet/# that stop reading (SIGSTOP) for a while, then resume: one QoS 1
  with a persistent session and keepalive 60 s (so a long stop also trips its keepalive), one
  QoS 0 with keepalive 600 s (stays connected; its outbox bound is what holds).

Every SOAK_INTERVAL seconds it samples the broker's RSS, peak RSS, CPU and /metrics, and the
probe's latency, and prints a row; at the end a summary: peak RSS and whether it stayed bounded,
drops by reason and by client, the probe's overall latency, and the archive (queried after a
clean shutdown) against what the simulator says it published.

Exits non-zero if the broker dies or exits uncleanly, the simulator or the probe fails, the
archive does not match, or RSS was not bounded. Every process it starts is stopped by itself or
by the cleanup (also on Ctrl-C); children also get SIGKILL if this script is killed.

    flock /tmp/fleetmq-bench.lock benches/soak.sh                 # 5 minutes
    SOAK_DURATION=60s flock /tmp/fleetmq-bench.lock benches/soak.sh

Environment: FLEETMQ (binary; default target/release/fleetmq, else
$CARGO_TARGET_DIR/release/fleetmq, else /var/tmp/fleetmq-ci-target/release/fleetmq),
SOAK_DURATION (60s, 5m, 300), SOAK_INTERVAL (10), SOAK_VEHICLES (2000), SOAK_SPEEDUP (4),
SOAK_PROBE_RATE (500), SOAK_SEED (1), SOAK_OUT (directory to keep the logs and samples in),
SOAK_KEEP=1 (keep the temporary directory).
"""

import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SoakFailure(Exception):
    pass


def duration_s(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", text)
    if not m:
        raise SystemExit(f"soak: SOAK_DURATION `{text}`: expected e.g. 60s, 5m or 300")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def find_binary():
    if os.environ.get("FLEETMQ"):
        return os.path.abspath(os.environ["FLEETMQ"])
    candidates = [os.path.join(REPO, "target/release/fleetmq")]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "release/fleetmq"))
    candidates.append("/var/tmp/fleetmq-ci-target/release/fleetmq")
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    raise SystemExit("soak: no fleetmq binary (tried " + ", ".join(candidates) + "); set FLEETMQ")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: if this script is killed outright, its children go too. Safe here:
    # the script is single-threaded.
    _libc.prctl(1, signal.SIGKILL)


class Procs:
    """Every child process, so that the cleanup can stop whatever is left."""

    def __init__(self):
        self.all = []

    def start(self, args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=None):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                             cwd=cwd, preexec_fn=_die_with_parent)
        self.all.append(p)
        return p

    def reap(self):
        self.all = [p for p in self.all if p.poll() is None]

    def stop_all(self, grace=5.0):
        self.reap()
        for p in self.all:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in self.all:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.all = []


def signal_proc(p, sig):
    if p is not None and p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------------------
# Sampling

def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


METRIC = re.compile(r'^(fleetmq_[a-z_]+)(?:\{([^}]*)\})?\s+(\S+)$')


def scrape(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        text = r.read().decode()
    m = {}
    for line in text.splitlines():
        g = METRIC.match(line)
        if g:
            name = g.group(1)[len("fleetmq_"):]
            labels = tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', g.group(2) or ""))
            m[(name, labels)] = float(g.group(3))
    return m


def msum(m, name):
    return sum(v for (n, _), v in m.items() if n == name)


def by_label(m, name):
    return {labels[0][1] if labels else "": v for (n, labels), v in m.items() if n == name}


class LogTail:
    """New lines of a log file that a child writes, since the last call."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, ""

    def lines(self):
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return []
        data = self.buf + data
        *complete, self.buf = data.split("\n")
        return complete


PROBE_LINE = re.compile(
    r"^\s*([\d.]+)s sent (\d+)/s acked (\d+)/s received (\d+)/s dropped (\d+) "
    r"latency ms p50 ([\d.]+) p99 ([\d.]+) p99\.9 ([\d.]+) max ([\d.]+)")
SIM_LINE = re.compile(
    r"^\s*([\d.]+)s connected (\d+) sent (\d+) \((\d+)/s\) acked (\d+) buffered (\d+) "
    r"reconnects (\d+) failures (\d+)")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


REASON_ABBREV = {"queue_full": "qf", "slow_consumer": "sc", "mesh_backlog": "mb",
                 "offline_qos0": "oq0"}


def host_cpu():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


# ---------------------------------------------------------------------------------------------
# Churn

class Churn:
    """Clients that come and go, driven from the main loop (one tick every quarter second)."""

    SLOTS = 6  # persistent subscribers soak-churn-sub-{k}

    def __init__(self, procs, port, vehicles, rng, stuck_from, stuck_until):
        self.procs, self.port, self.rng = procs, port, rng
        self.vehicles = vehicles
        self.slots = [None] * self.SLOTS          # (proc, kill_at, sig)
        self.next_start = [1.0 + k * 0.5 for k in range(self.SLOTS)]
        self.pubs = []                             # (proc, kill_at or None)
        self.next_pub = 1.0
        self.next_reader = 2.0
        self.n = 0
        self.stuck = {}
        self.stuck_from, self.stuck_until = stuck_from, stuck_until
        self.stuck_state = "reading"
        self.counts = {"sub_connects": 0, "sub_sigkill": 0, "sub_sigterm": 0, "pub_runs": 0,
                       "pub_sigkill": 0, "retained_readers": 0}

    def sub(self, *args):
        return self.procs.start(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), *args])

    def pub(self, *args):
        return self.procs.start(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), *args])

    def start_stuck(self):
        # QoS 1, persistent, keepalive 60 s: a stop longer than 90 s also trips the keepalive.
        self.stuck["q1"] = self.sub("-c", "-i", "soak-stuck-q1", "-q", "1", "-k", "60",
                                    "-t", "fleet/#")
        # QoS 0, clean, keepalive 600 s: stays connected, held by its outbox bound.
        self.stuck["q0"] = self.sub("-i", "soak-stuck-q0", "-q", "0", "-k", "600",
                                    "-t", "fleet/#")

    def tick(self, t):
        r = self.rng
        if self.stuck_state == "reading" and t >= self.stuck_from:
            for p in self.stuck.values():
                signal_proc(p, signal.SIGSTOP)
            self.stuck_state = "stopped"
        elif self.stuck_state == "stopped" and t >= self.stuck_until:
            for p in self.stuck.values():
                signal_proc(p, signal.SIGCONT)
            self.stuck_state = "resumed"
        for k in range(self.SLOTS):
            s = self.slots[k]
            if s is None and t >= self.next_start[k]:
                if k == self.SLOTS - 1:
                    # Wide: every reefer reading (~1/30 per vehicle-second) at QoS 1; offline
                    # for a few seconds it may reach the session queue bound (queue_full).
                    topics = ["-t", "fleet/+/reefer"]
                else:
                    v = r.randrange(min(self.vehicles, 50))
                    topics = ["-t", f"fleet/truck-{v:05d}/#", "-t", "churn/#"]
                p = self.sub("-c", "-i", f"soak-churn-sub-{k}", "-q", "1", *topics)
                sig = signal.SIGKILL if r.random() < 0.4 else signal.SIGTERM
                self.slots[k] = (p, t + r.uniform(2, 8), sig)
                self.counts["sub_connects"] += 1
            elif s is not None and t >= s[1]:
                p, _, sig = s
                signal_proc(p, sig)
                self.counts["sub_sigkill" if sig == signal.SIGKILL else "sub_sigterm"] += 1
                self.slots[k] = None
                self.next_start[k] = t + r.uniform(1, 6)
        if t >= self.next_pub:
            self.n += 1
            n = self.n
            args = ["-q", str(r.choice((0, 1))), "--repeat", "150", "--repeat-delay", "0.01",
                    "-m", "x" * 100]
            if n % 5 == 0:
                args += ["-r", "-t", f"churn/retained/{n % 50}"]
            else:
                args += ["-t", f"churn/pub/{n % 20}"]
            kill_at = None
            if r.random() < 0.3:
                args += ["--will-topic", f"churn/will/{n % 20}", "--will-payload", "gone",
                         "--will-qos", "1"]
                kill_at = t + r.uniform(0.3, 1.5)
            self.pubs.append((self.pub(*args), kill_at))
            self.counts["pub_runs"] += 1
            self.next_pub = t + r.uniform(0.5, 1.5)
        keep = []
        for p, kill_at in self.pubs:
            if p.poll() is not None:
                continue
            if kill_at is not None and t >= kill_at:
                signal_proc(p, signal.SIGKILL)
                self.counts["pub_sigkill"] += 1
                continue
            keep.append((p, kill_at))
        self.pubs = keep
        if t >= self.next_reader:
            # Clean session: the retained statuses arrive at once; leaves after 200 or 5 s.
            self.sub("-q", "1", "-t", "fleet/+/status", "-C", "200", "-W", "5")
            self.counts["retained_readers"] += 1
            self.next_reader = t + r.uniform(2, 4)
        self.procs.reap()

    def stop(self):
        for s in self.slots:
            if s:
                signal_proc(s[0], signal.SIGTERM)
        for p, _ in self.pubs:
            signal_proc(p, signal.SIGTERM)
        for p in self.stuck.values():
            signal_proc(p, signal.SIGCONT)
            signal_proc(p, signal.SIGTERM)


# ---------------------------------------------------------------------------------------------

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1048576:.0f} GiB"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), {mem}, Linux {os.uname().release}; load average {load}"


def git_rev():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return "?"


def wait_ready(broker, port, http_url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            raise SoakFailure(f"broker exited during startup (code {broker.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            scrape(http_url)
            return
        except OSError:
            time.sleep(0.1)
    raise SoakFailure("broker not ready within 30 s")


def run(work):
    binary = find_binary()
    dur = duration_s(os.environ.get("SOAK_DURATION", "5m"))
    interval = float(os.environ.get("SOAK_INTERVAL", "10"))
    vehicles = int(os.environ.get("SOAK_VEHICLES", "2000"))
    speedup = float(os.environ.get("SOAK_SPEEDUP", "4"))
    probe_rate = int(os.environ.get("SOAK_PROBE_RATE", "500"))
    seed = int(os.environ.get("SOAK_SEED", "1"))
    port, http = free_port(), free_port()
    url = f"mqtt://127.0.0.1:{port}"
    metrics_url = f"http://127.0.0.1:{http}/metrics"
    data = os.path.join(work, "data")
    procs = Procs()
    failures = []

    print(f"== soak: {machine()}")
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(binary)))
    print(f"== binary {binary} (built {built}), repo at {git_rev()}, work dir {work}")
    rate = vehicles * speedup * 1.033  # GPS at 1 Hz and reefer every 30 s, in fleet time
    print(f"== {dur:.0f} s: simulate {vehicles} vehicles x{speedup:g} (~{rate:.0f} msg/s QoS 1), "
          f"probe {probe_rate} msg/s QoS 1, churn, 2 stuck subscribers", flush=True)

    broker_log = os.path.join(work, "broker.log")
    with open(broker_log, "w") as log:
        broker = procs.start([binary, "broker", "--mqtt", f"127.0.0.1:{port}",
                              "--http", f"127.0.0.1:{http}", "--shards", "2", "--data", data],
                             stdout=log, stderr=log, cwd=work)
    try:
        wait_ready(broker, port, metrics_url)
        m0 = scrape(metrics_url)
        if not any(n.startswith("persistence_") for n, _ in m0) or \
                not any(n.startswith("archive_") for n, _ in m0):
            raise SoakFailure("persistence or archive is not on (no such metrics)")

        stuck_from = max(10.0, 0.15 * dur)
        stuck_until = 0.6 * dur
        churn = Churn(procs, port, vehicles, random.Random(seed), stuck_from, stuck_until)
        churn.start_stuck()

        sim_log, probe_log = os.path.join(work, "simulate.log"), os.path.join(work, "probe.log")
        truth = os.path.join(work, "truth.json")
        with open(sim_log, "w") as sl:
            sim = procs.start([binary, "simulate", "--broker", url, "--vehicles", str(vehicles),
                               "--speedup", f"{speedup:g}", "--duration", f"{dur:g}s",
                               "--threads", "1", "--seed", str(seed), "--truth", truth],
                              stdout=sl, stderr=sl)
        with open(probe_log, "w") as pl:
            probe = procs.start([binary, "loadgen", "--broker", url, "--rate", str(probe_rate),
                                 "--publishers", "5", "--subscribers", "1", "--qos", "1",
                                 "--duration", f"{dur:g}s", "--topic-prefix", "probe",
                                 "--threads", "1"], stdout=pl, stderr=pl)
        probe_tail, sim_tail = LogTail(probe_log), LogTail(sim_log)

        print(f"== stuck subscribers stop reading at {stuck_from:.0f} s, resume at {stuck_until:.0f} s")
        print("== columns: CPU% the broker's, of one core; host% the whole machine's; queued,"
              " outbox: all shards; plog: persistence logs;\n"
              "   archived: rows in published Parquet files; lag: records in the write-ahead log"
              " not yet in one; abuf: the archive's buffered bytes;\n"
              "   p50: median of the probe's 1-s p50s and p99: worst 1-s p99 in the interval;"
              " pdrop: messages the probe's subscriber missed;\n"
              "   drops: cumulative, by reason (qf queue_full, sc slow_consumer, mb mesh_backlog,"
              " oq0 offline_qos0)")
        print("   t  RSS/MB HWM/MB  CPU% host%  recv/s  sent/s   sim/s conns  sess  queued  q/MB outbox"
              "  plog/MB archived     lag abuf/MB  p50/ms  p99/ms pdrop  drops")
        hz = os.sysconf("SC_CLK_TCK")
        t0 = time.monotonic()
        prev = {"t": 0.0, "cpu": proc_cpu_ticks(broker.pid), "host": host_cpu(),
                "recv": msum(m0, "messages_received_total"),
                "sent": msum(m0, "messages_sent_total"), "sim_sent": 0}
        samples = []
        interval_probe = []
        sim_sent = 0
        next_sample = interval
        churn_end = dur - 3
        churning = True
        while True:
            time.sleep(0.25)
            t = time.monotonic() - t0
            if broker.poll() is not None:
                raise SoakFailure(f"the broker DIED at {t:.0f} s (exit code {broker.returncode})")
            if churning:
                if t < churn_end:
                    churn.tick(t)
                else:
                    churn.stop()
                    churning = False
            done = sim.poll() is not None and probe.poll() is not None
            if t < next_sample and not done:
                continue
            next_sample += interval
            for line in probe_tail.lines():
                g = PROBE_LINE.match(line)
                if g:
                    interval_probe.append(tuple(float(x) for x in g.groups()))
            for line in sim_tail.lines():
                g = SIM_LINE.match(line)
                if g:
                    sim_sent = int(g.group(3))
            try:
                st = proc_status(broker.pid)
                cpu = proc_cpu_ticks(broker.pid)
                host = host_cpu()
                m = scrape(metrics_url)
            except (OSError, ValueError) as e:
                if broker.poll() is not None:
                    raise SoakFailure(f"the broker DIED at {t:.0f} s (exit code {broker.returncode})")
                failures.append(f"sampling at {t:.0f} s failed: {e}")
                continue
            dt = t - prev["t"]
            recv, sent = msum(m, "messages_received_total"), msum(m, "messages_sent_total")
            drops = by_label(m, "messages_dropped_total")
            s = {
                "t": t, "rss_mb": st["VmRSS"] / 1024, "hwm_mb": st["VmHWM"] / 1024,
                "cpu_pct": (cpu - prev["cpu"]) / hz / dt * 100,
                "host_pct": (host[0] - prev["host"][0]) / max(1, host[1] - prev["host"][1]) * 100,
                "recv_s": (recv - prev["recv"]) / dt, "sent_s": (sent - prev["sent"]) / dt,
                "sim_s": (sim_sent - prev["sim_sent"]) / dt,
                "connections": msum(m, "connections"), "sessions": msum(m, "sessions"),
                "queued_msgs": msum(m, "queued_messages"),
                "queued_mb": msum(m, "queued_bytes") / 1048576,
                "inflight": msum(m, "inflight_messages"),
                "outbox": msum(m, "outbox_packets"), "mesh": msum(m, "mesh_queue_messages"),
                "plog_mb": msum(m, "persistence_log_bytes") / 1048576,
                "snapshots": msum(m, "persistence_snapshots_total"),
                "archived": sum(v for k, v in by_label(m, "archive_rows_total").items()
                                if k in ("gps", "reefer")),
                "archive_lag": msum(m, "archive_lag_records"),
                "archive_buf_mb": msum(m, "archive_buffered_bytes") / 1048576,
                "retained": msum(m, "retained_messages"),
                "p50": median([p[5] for p in interval_probe]),
                "p99": max([p[6] for p in interval_probe], default=None),
                "probe_max": max([p[8] for p in interval_probe], default=None),
                "probe_recv_s": (sum(p[3] for p in interval_probe) / len(interval_probe)
                                 if interval_probe else None),
                "probe_dropped": sum(int(p[4]) for p in interval_probe),
                "drops": drops, "metrics": m,
            }
            samples.append(s)
            interval_probe = []
            prev = {"t": t, "cpu": cpu, "host": host, "recv": recv, "sent": sent,
                    "sim_sent": sim_sent}
            dtext = " ".join(f"{REASON_ABBREV.get(k, k)}={v:.0f}" for k, v in sorted(drops.items()))
            print(f"{t:4.0f} {s['rss_mb']:7.1f} {s['hwm_mb']:6.1f} {s['cpu_pct']:5.0f} "
                  f"{s['host_pct']:5.0f} {s['recv_s']:7.0f} {s['sent_s']:7.0f} {s['sim_s']:7.0f} "
                  f"{s['connections']:5.0f} {s['sessions']:5.0f} {s['queued_msgs']:7.0f} "
                  f"{s['queued_mb']:5.1f} {s['outbox']:6.0f} {s['plog_mb']:8.1f} "
                  f"{s['archived']:8.0f} {s['archive_lag']:7.0f} {s['archive_buf_mb']:7.1f} "
                  f"{fmt(s['p50'], '7.2f')} {fmt(s['p99'], '7.2f')} {s['probe_dropped']:5d}  "
                  f"{dtext or '-'}", flush=True)
            if done:
                break
            if t > dur + 90:
                raise SoakFailure(f"simulator or probe still running {t - dur:.0f} s after the end")

        if sim.returncode != 0:
            failures.append(f"the simulator exited with code {sim.returncode}")
        if probe.returncode != 0:
            failures.append(f"the probe exited with code {probe.returncode}")

        # Stop the broker cleanly (SIGTERM), so the archive publishes what it buffers.
        final = samples[-1]["metrics"] if samples else {}
        hwm = proc_status(broker.pid)["VmHWM"] / 1024
        broker.send_signal(signal.SIGTERM)
        try:
            code = broker.wait(60)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
            raise SoakFailure("the broker did not stop within 60 s of SIGTERM")
        if code != 0:
            raise SoakFailure(f"the broker exited with code {code} on SIGTERM")

        summary(binary, work, data, samples, final, hwm, churn, sim_log, probe_log, truth,
                broker_log, dur, failures)
    finally:
        procs.stop_all()
        out = os.environ.get("SOAK_OUT")
        if out:
            os.makedirs(out, exist_ok=True)
            for name in ("broker.log", "simulate.log", "probe.log"):
                if os.path.exists(os.path.join(work, name)):
                    shutil.copy(os.path.join(work, name), out)
            if "samples" in locals():
                with open(os.path.join(out, "samples.json"), "w") as f:
                    json.dump([{k: v for k, v in s.items() if k != "metrics"} for s in samples],
                              f, indent=1)
    return failures


def rss_bounded(samples, dur):
    """Early vs late window max RSS under load: the first full window after warm-up against the
    last one. The sample taken once the load has ended (2000 vehicles disconnecting at once,
    a transient of its own) is not part of either."""
    w = min(60.0, dur / 4)
    early = [s["rss_mb"] for s in samples if w <= s["t"] < 2 * w + 1]
    late = [s["rss_mb"] for s in samples if dur - w <= s["t"] <= dur]
    if not early or not late:
        return None, None, None, w
    e, l = max(early), max(late)
    return e, l, l <= 1.25 * e, w


def summary(binary, work, data, samples, final, hwm, churn, sim_log, probe_log, truth_path,
            broker_log, dur, failures):
    print("\n== summary")
    peak = max(samples, key=lambda s: s["rss_mb"])
    e, l, ok, w = rss_bounded(samples, dur)
    print(f"peak RSS {peak['rss_mb']:.1f} MB at {peak['t']:.0f} s (VmHWM {hwm:.1f} MB); "
          f"CPU mean {sum(s['cpu_pct'] for s in samples) / len(samples):.0f} % of one core, "
          f"max {max(s['cpu_pct'] for s in samples):.0f} %")
    if ok is None:
        print("RSS bounded: - (run too short to compare windows)")
    else:
        print(f"RSS bounded: {'yes' if ok else 'NO'} (max {e:.1f} MB in [{w:.0f} s, {2 * w:.0f} s], "
              f"max {l:.1f} MB in the last {w:.0f} s; limit 1.25x)")
        if not ok:
            failures.append(f"RSS grew: {e:.1f} MB early, {l:.1f} MB late")
    minutes = {}
    for s in samples:
        minutes.setdefault(min(int((s["t"] - 0.5) // 60), int(dur // 60) - 1), []).append(s["rss_mb"])
    if len(minutes) > 1:
        print("RSS by minute (min-max MB): " + ", ".join(
            f"{m + 1}: {min(v):.0f}-{max(v):.0f}" for m, v in sorted(minutes.items())))
    drops = by_label(final, "messages_dropped_total")
    print("drops by reason: " + (", ".join(f"{k} {v:.0f}" for k, v in sorted(drops.items())) or "none"))
    clients = sorted(by_label(final, "client_messages_dropped_total").items(), key=lambda kv: -kv[1])
    if clients:
        print("drops by client: " + ", ".join(f"{k} {v:.0f}" for k, v in clients[:8]))
    print(f"broker totals: received {msum(final, 'messages_received_total'):.0f}, "
          f"sent {msum(final, 'messages_sent_total'):.0f}, accepted connections "
          f"{msum(final, 'connections_accepted_total'):.0f}, protocol errors "
          f"{msum(final, 'protocol_errors_total'):.0f}, persistence snapshots "
          f"{msum(final, 'persistence_snapshots_total'):.0f}, archive write errors "
          f"{msum(final, 'archive_write_errors_total'):.0f}, archive duplicates "
          f"{msum(final, 'archive_duplicates_total'):.0f}")
    print("churn: " + ", ".join(f"{k} {v}" for k, v in churn.counts.items()))

    with open(probe_log, errors="replace") as f:
        lines = f.read().splitlines()
    total = [x for x in lines if x.startswith("sent ")]
    lat = [x for x in lines if x.startswith("latency")]
    print(f"probe (loadgen, overall): {total[-1] if total else '?'}; {lat[-1] if lat else '?'}")
    g = re.search(r"dropped (\d+)", total[-1]) if total else None
    if g and int(g.group(1)) > 0:
        print(f"  ! the probe's QoS 1 subscriber missed {g.group(1)} messages")
    with open(sim_log, errors="replace") as f:
        for line in f.read().splitlines():
            if line.startswith("fleetmq simulate: published") or "not published" in line:
                print(f"simulator: {line.removeprefix('fleetmq simulate: ')}")

    # The archive after a clean shutdown, against what the simulator published.
    try:
        with open(truth_path) as f:
            truth = json.load(f)
        pub = {k: sum(v["published"][k]["count"] for v in truth["vehicles"]) for k in ("gps", "reefer")}
        got = {}
        for k in ("gps", "reefer"):
            r = subprocess.run([binary, "query", "--data", data, "--format", "csv",
                                f"SELECT count(*) AS n FROM {k}"],
                               capture_output=True, text=True, timeout=300)
            got[k] = int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
        same = all(pub[k] == got[k] for k in pub)
        print(f"archive: published gps {pub['gps']} reefer {pub['reefer']}; archived gps {got['gps']} "
              f"reefer {got['reefer']}: {'every reading once' if same else 'MISMATCH'}")
        if not same:
            failures.append("the archive does not match what the simulator published")
    except (OSError, ValueError, KeyError, IndexError, subprocess.TimeoutExpired) as e:
        print(f"archive: not verified ({e})")
        failures.append(f"archive not verified: {e}")

    with open(broker_log, errors="replace") as f:
        log = f.read().splitlines()
    bad = {}
    for line in log:
        g = re.match(r"^\S+\s+(WARN|ERROR)\s+(.*)$", line)
        if g:
            key = g.group(1) + " " + re.sub(r"=[\d.]+\w*", "=N", g.group(2))[:200]
            bad[key] = bad.get(key, 0) + 1
    print(f"broker log: {len(log)} lines, {sum(bad.values())} WARN/ERROR")
    for k, n in sorted(bad.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {n:6d} x {k}")


def main():
    work = tempfile.mkdtemp(prefix="fleetmq-soak-")

    def on_signal(sig, _frame):
        raise SoakFailure(f"interrupted by signal {sig}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        failures = run(work)
    except SoakFailure as e:
        print(f"\nsoak: FAILED: {e}", file=sys.stderr)
        log = os.path.join(work, "broker.log")
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.read().splitlines()[-30:]
            print("broker log (last 30 lines):\n  " + "\n  ".join(tail), file=sys.stderr)
        return 1
    finally:
        if os.environ.get("SOAK_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"soak: kept {work}")
    if failures:
        print("\nsoak: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("\nsoak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
