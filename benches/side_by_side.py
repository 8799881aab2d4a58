#!/usr/bin/env python3
"""Side-by-side broker benchmark: fleetmq against mosquitto and rumqttd, same load, same run.

Every broker under test is started fresh for every workload, on its own loopback port, with an
equivalent configuration (in memory, no persistence, no authentication, limits large enough for
the workload). The same load generator (`fleetmq loadgen`, or `fleetmq simulate` for the fleet)
drives each in turn. For every workload and broker the harness measures:

  msg/s           messages routed per second: publishes taken in (acknowledged, at QoS 1) or
                  deliveries made, whichever is more (fan-in: in, fan-out: out, pairs: both);
                  the last delivery, not the end of publishing, closes the window, so a broker
                  that buffers does not look faster than it is
  CPU s/M msg     broker CPU seconds (user + system, all threads, from /proc) per million
                  messages routed: the figure that survives a noisy, shared machine
  lost            gaps in a publisher's sequence seen by a subscriber: messages the broker
                  took but dropped (a queue limit for a subscriber that could not keep up)
  peak RSS        the broker's VmHWM, in MiB
  p50/p99/p99.9   publish-to-delivery latency, ms, from the loadgen's HDR histograms
  gen CPU s/M     the load generator's own CPU per million messages: its ceiling is
                  (cores / that) million msg/s, so a reader can tell whether it was the limit

and prints one table per workload with the ratio of fleetmq to each peer. Results also go to
a JSON file for BENCHMARKS.md.

    cargo build --release
    python3 benches/side_by_side.py                       # everything, about 15 minutes
    python3 benches/side_by_side.py --workloads fanin-q1,latency --duration 10
    python3 benches/side_by_side.py --workloads latency --repeat 5   # medians of 5 rounds

On a shared machine one run per broker can land in a slow spell; `--repeat N` runs N rounds,
each visiting every broker in turn, and tables the median of each figure.

Needs mosquitto (Debian package) and rumqttd (`cargo install rumqttd`); a broker that is not
installed is skipped with a note. Talks to 127.0.0.1 only, and every process it starts is
stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def voluntary_switches(pid: int) -> int:
    """Times any thread of a process blocked (and so had to be woken again), so far: the sum of
    `voluntary_ctxt_switches` over its threads. Threads that already exited are not counted."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            pass  # the thread exited between the listing and the read
    return total


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------------
# Brokers


@dataclass
class Broker:
    """One broker under test: how to start it on a port, in a scratch directory."""

    name: str
    kind: str  # fleetmq | mosquitto | rumqttd
    binary: str
    shards: int = 2
    socket_io: str = "epoll"

    def command(self, port: int, work: Path, archive: bool) -> list[str]:
        if self.kind == "fleetmq":
            conf = work / "fleetmq.toml"
            conf.write_text(f"[limits]\nmax_inflight = {INFLIGHT}\n"
                            f"max_queued_messages = {QUEUED}\n")
            cmd = [self.binary, "broker", "--config", str(conf),
                   "--mqtt", f"127.0.0.1:{port}", "--http", "off",
                   "--shards", str(self.shards), "--socket-io", self.socket_io,
                   "--no-persistence",
                   "--data", str(work / "data")]
            if not archive:
                cmd.append("--no-archive")
            return cmd
        if self.kind == "mosquitto":
            conf = work / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence false\n"
                "set_tcp_nodelay true\n"
                "max_connections -1\n"
                f"max_queued_messages {QUEUED}\n"
                f"max_inflight_messages {INFLIGHT}\n"
                "log_dest stderr\n"
                "log_type error\n"
                "log_type warning\n"
            )
            return [self.binary, "-c", str(conf)]
        if self.kind == "rumqttd":
            conf = work / "rumqttd.toml"
            conf.write_text(RUMQTTD_CONFIG.format(port=port, inflight=INFLIGHT))
            return [self.binary, "--config", str(conf)]
        raise ValueError(self.kind)


# rumqttd's schema (its own rumqttd.toml trimmed): one MQTT 3.1.1 listener, the connection limit
# raised for the idle workload, INFLIGHT messages in flight per client like the other two.
RUMQTTD_CONFIG = """\
id = 0

[router]
id = 0
max_connections = 60000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = {inflight}
    dynamic_filters = true
"""

# The same limits for every broker: messages in flight towards one client (QoS 1/2), and
# messages queued for one client beyond those.
INFLIGHT = 100
QUEUED = 1000


class Running:
    """A started broker (and, for a peer in the fleet workload, the archive process beside it)."""

    def __init__(self, broker: Broker, work: Path, archive: bool, fleetmq: str):
        self.broker = broker
        # Where the fleet workload's archive is written: fleetmq's own, or the ingest sidecar's.
        self.archive_dir = work / ("data" if broker.kind == "fleetmq" else "archive")
        self.port = free_port()
        self.log = open(work / f"{broker.name}.log", "wb")
        self.proc = subprocess.Popen(broker.command(self.port, work, archive), cwd=work,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.sidecar: subprocess.Popen | None = None
        try:
            wait_listening(self.port, self.proc)
        except Exception:
            self.stop()
            raise
        if archive and broker.kind != "fleetmq":
            # fleetmq archives inside the broker; a peer needs fleetmq's archive as a client,
            # and its CPU counts as the broker's: the job is the same.
            # rumqttd's listener here is its MQTT 3.1.1 one ([v4.1]); it drops an MQTT 5 CONNECT.
            version = "3.1.1" if broker.kind == "rumqttd" else "5"
            self.sidecar = subprocess.Popen(
                [fleetmq, "ingest", "--broker", f"mqtt://127.0.0.1:{self.port}",
                 "--data", str(work / "archive"), "--mqtt-version", version],
                cwd=work, stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(0.5)

    def pids(self) -> list[int]:
        return [p.pid for p in (self.proc, self.sidecar) if p is not None]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def wakes(self) -> int:
        return sum(voluntary_switches(pid) for pid in self.pids())

    def memory(self) -> dict[str, int]:
        total: dict[str, int] = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.pids():
            for key, value in memory_kib(pid).items():
                total[key] += value
        return total

    def alive(self) -> bool:
        return all(p.poll() is None for p in (self.proc, self.sidecar) if p is not None)

    def stop(self) -> None:
        for p in (self.sidecar, self.proc):
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


# --------------------------------------------------------------------------------------------
# Workloads


@dataclass
class Result:
    workload: str
    broker: str
    delivered: int = 0
    msg_per_s: float | None = None
    cpu_s_per_m: float | None = None
    peak_rss_mib: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    dropped: int = 0
    failures: int = 0
    gen_cpu_s_per_m: float | None = None
    wakes_per_msg: float | None = None
    kib_per_conn: float | None = None
    connections: int | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


MEDIAN_FIELDS = ("delivered", "msg_per_s", "cpu_s_per_m", "peak_rss_mib", "p50_ms", "p99_ms",
                 "p999_ms", "dropped", "gen_cpu_s_per_m", "wakes_per_msg", "kib_per_conn",
                 "connections")


def median_result(runs: list[Result]) -> Result:
    """One row for several runs of a workload on one broker: each figure is the median of that
    figure over the runs that produced it (so a row's figures may come from different runs);
    failures add up, notes are kept, `extra` is the run with the median CPU cost."""
    if len(runs) == 1:
        return runs[0]
    res = Result(runs[0].workload, runs[0].broker)
    for name in MEDIAN_FIELDS:
        values = [getattr(r, name) for r in runs if getattr(r, name) is not None]
        if values:
            med = statistics.median(values)
            setattr(res, name, type(values[0])(med) if isinstance(values[0], int) else med)
    res.failures = sum(r.failures for r in runs)
    res.note = "; ".join(sorted({r.note for r in runs if r.note}))
    costed = sorted((r for r in runs if r.cpu_s_per_m is not None), key=lambda r: r.cpu_s_per_m)
    res.extra = {"runs": len(runs), **(costed[len(costed) // 2].extra if costed else {})}
    return res


def run_child(cmd: list[str], log: Path, timeout: float) -> tuple[str, int]:
    """Runs a load process to its end (its stderr appended to `log`); returns its stdout and
    exit code. Once reaped, its CPU shows in `children_cpu()`."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + timeout
        out = b""
        while True:
            try:
                o, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
                out += o or b""
                break
            except subprocess.TimeoutExpired:
                proc.kill()
                o, _ = proc.communicate()
                out += o or b""
                raise RuntimeError(f"{cmd[1]} did not finish in {timeout} s")
    return out.decode(), proc.returncode


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def loadgen_workload(name: str, args: list[str]):
    def run(ctx: "Context", running: Running) -> Result:
        cmd = [ctx.fleetmq, "loadgen", "--broker", f"mqtt://127.0.0.1:{running.port}",
               "--payload-size", "100", "--duration", f"{ctx.duration}s", "--json",
               "--topic-prefix", "bench", *args]
        gen0, cpu0, wakes0 = children_cpu(), running.cpu(), running.wakes()
        out, code = run_child(cmd, ctx.work / "loadgen.log", ctx.duration + 90)
        cpu1, gen1, wakes1 = running.cpu(), children_cpu(), running.wakes()
        if code != 0 or not out.strip():
            raise RuntimeError(f"loadgen exited with {code}; see {ctx.work / 'loadgen.log'}")
        line = json.loads(out.strip().splitlines()[-1])
        res = Result(name, running.broker.name)
        # At QoS 1 the broker acknowledged what it took. At QoS 0 "sent" only means handed to
        # the client's buffer, so what the broker demonstrably took is what a subscriber got
        # plus the gaps it saw.
        taken_in = line["acked"] if "--qos" in args and args[args.index("--qos") + 1] != "0" \
            else line["received"] + line["dropped"]
        res.delivered = max(taken_in, line["received"])
        res.dropped = line["dropped"]
        res.failures = line["failures"]
        window = max(line.get("delivery_seconds") or 0, line["publish_seconds"])
        if res.delivered:
            res.msg_per_s = res.delivered / window
            res.cpu_s_per_m = (cpu1 - cpu0) / res.delivered * 1e6
            res.gen_cpu_s_per_m = (gen1 - gen0) / res.delivered * 1e6
            res.wakes_per_msg = (wakes1 - wakes0) / res.delivered
        lat = line["latency_us"]
        res.p50_ms, res.p99_ms, res.p999_ms = (
            None if lat[k] is None else lat[k] / 1000 for k in ("p50", "p99", "p999"))
        res.extra = {"sent": line["sent"], "acked": line["acked"], "received": line["received"],
                     "publish_seconds": line["publish_seconds"], "delivery_seconds": window}
        return res
    return run


def idle_workload(ctx: "Context", running: Running) -> Result:
    """Opens N idle connections; memory per connection is the RSS they added, divided by N."""
    res = Result("idle", running.broker.name)
    before = running.memory()["VmRSS"]
    cmd = [ctx.fleetmq, "loadgen", "--broker", f"mqtt://127.0.0.1:{running.port}",
           "--idle", str(ctx.idle), "--duration", "8s", "--json"]
    with open(ctx.work / "loadgen.log", "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        try:
            up = json.loads(first)
        except json.JSONDecodeError:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"loadgen --idle printed {first!r}")
        time.sleep(3)  # let the broker settle (the connects' transient buffers freed)
        after = running.memory()["VmRSS"]
        proc.communicate(timeout=120)
    res.connections = up["connected"]
    res.failures = up["failures"]
    if res.connections:
        res.kib_per_conn = (after - before) / res.connections
    res.extra = {"rss_before_kib": before, "rss_after_kib": after,
                 "connect_seconds": up["seconds"]}
    return res


def fleet_workload(ctx: "Context", running: Running) -> Result:
    """The product's own workload: simulated vehicles at 1 Hz, a dashboard subscriber checking
    every reading (--verify), and the archive on (fleetmq's own, or `fleetmq ingest` beside a
    peer)."""
    res = Result("fleet", running.broker.name)
    cmd = [ctx.fleetmq, "simulate", "--broker", f"mqtt://127.0.0.1:{running.port}",
           "--vehicles", str(ctx.vehicles), "--duration", f"{ctx.fleet_duration}s",
           "--speedup", "1", "--verify"]
    gen0, cpu0, wakes0 = children_cpu(), running.cpu(), running.wakes()
    start = time.monotonic()
    _, code = run_child(cmd, ctx.work / "simulate.log", ctx.fleet_duration + 120)
    wall = time.monotonic() - start
    cpu1, gen1, wakes1 = running.cpu(), children_cpu(), running.wakes()
    summary = parse_simulate((ctx.work / "simulate.log").read_text(errors="replace"))
    if code != 0:
        res.note = f"simulate exited with {code} (verification or publishing failed)"
    # Messages: readings the vehicles published; each was also delivered to the dashboard
    # subscriber and archived.
    res.delivered = summary.get("published", 0)
    res.dropped = summary.get("generated", 0) - res.delivered
    if res.delivered:
        res.msg_per_s = res.delivered / ctx.fleet_duration
        res.cpu_s_per_m = (cpu1 - cpu0) / res.delivered * 1e6
        res.gen_cpu_s_per_m = (gen1 - gen0) / res.delivered * 1e6
        res.wakes_per_msg = (wakes1 - wakes0) / res.delivered
    res.extra = {"wall_seconds": wall, **summary}
    return res


def archived_readings(fleetmq: str, data: Path) -> dict[str, int]:
    """Rows in the archive at `data`, read back with `fleetmq query` once the broker (and its
    ingest sidecar) stopped: all of them, and distinct (vehicle, seq) pairs, over both tables.
    Empty when the archive cannot be read."""
    found = {"archived": 0, "archived_distinct": 0}
    for name in ("gps", "reefer"):
        sql = f"SELECT count(*) AS n, count(DISTINCT (vehicle_id, seq)) AS d FROM {name}"
        try:
            out = subprocess.run([fleetmq, "query", "--data", str(data), "--format", "csv", sql],
                                 capture_output=True, text=True, timeout=300)
            rows, distinct = out.stdout.strip().splitlines()[-1].split(",")
            found["archived"] += int(rows)
            found["archived_distinct"] += int(distinct)
        except (subprocess.SubprocessError, ValueError, IndexError):
            return {}
    return found


def parse_simulate(text: str) -> dict[str, int]:
    """The counts in `fleetmq simulate`'s summary lines."""
    found: dict[str, int] = {}
    m = re.search(r"published (\d+) of (\d+) readings", text)
    if m:
        found["published"], found["generated"] = int(m[1]), int(m[2])
    m = re.search(r"verify: (\d+) telemetry messages received \((\d+) duplicates\), (\d+) "
                  r"invalid, (\d+) vehicles mismatching", text)
    if m:
        found.update(received=int(m[1]), duplicates=int(m[2]), invalid=int(m[3]),
                     mismatching=int(m[4]))
    return found


WORKLOADS = {
    # name: (description, runner, archive on)
    "fanin-q0": ("fan-in: 1000 publishers -> 1 subscriber on bench/#, QoS 0, 100 B, "
                 "fixed 200,000 msg/s",
                 loadgen_workload("fanin-q0", ["--publishers", "1000", "--subscribers", "1",
                                               "--qos", "0", "--rate", "200000"]), False),
    "fanin-q1": ("fan-in: 1000 publishers -> 1 subscriber on bench/#, QoS 1, 100 B, "
                 "fixed 50,000 msg/s",
                 loadgen_workload("fanin-q1", ["--publishers", "1000", "--subscribers", "1",
                                               "--qos", "1", "--rate", "50000"]), False),
    "fanin-q1-max": ("fan-in: 1000 publishers -> 1 subscriber on bench/#, QoS 1, 100 B, flat "
                     "out (msg/s: publishes acknowledged; lost: what the subscriber missed)",
                     loadgen_workload("fanin-q1-max", ["--publishers", "1000", "--subscribers",
                                                       "1", "--qos", "1", "--rate", "max"]),
                     False),
    "pairs-q1": ("1:1: 500 publishers, each with its own subscriber, QoS 1, 100 B, flat out",
                 loadgen_workload("pairs-q1", ["--publishers", "500", "--subscribers", "500",
                                               "--pattern", "pairs", "--qos", "1",
                                               "--rate", "max"]), False),
    "fanout-q0": ("fan-out: 1 publisher -> 1000 subscribers on bench/#, QoS 0, 100 B, "
                  "100 msg/s (100k deliveries/s)",
                  loadgen_workload("fanout-q0", ["--publishers", "1", "--subscribers", "1000",
                                                 "--qos", "0", "--rate", "100"]), False),
    # The rates fleets send, well below saturation: shards sleep between messages here, so these
    # price each wake-up. The same shapes as the workloads above, at a fraction of their load.
    "rate-fanin-q0": ("fan-in at a fleet's rate: 200 publishers -> 1 subscriber on bench/#, QoS 0, "
                      "100 B, fixed 40,000 msg/s",
                      loadgen_workload("rate-fanin-q0", ["--publishers", "200", "--subscribers",
                                                         "1", "--qos", "0", "--rate", "40000"]),
                      False),
    "rate-fanin-q1": ("fan-in at a fleet's rate: 200 publishers -> 1 subscriber on bench/#, QoS 1, "
                      "100 B, fixed 10,000 msg/s",
                      loadgen_workload("rate-fanin-q1", ["--publishers", "200", "--subscribers",
                                                         "1", "--qos", "1", "--rate", "10000"]),
                      False),
    "rate-pairs-q0": ("1:1 at a fixed rate: 100 publishers, each with its own subscriber, QoS 0, "
                      "100 B, fixed 30,000 msg/s",
                      loadgen_workload("rate-pairs-q0", ["--publishers", "100", "--subscribers",
                                                         "100", "--pattern", "pairs", "--qos", "0",
                                                         "--rate", "30000"]), False),
    "rate-fanout-q0": ("fan-out at a fixed rate: 1 publisher -> 200 subscribers on bench/#, QoS 0, "
                       "100 B, 300 msg/s (60k deliveries/s)",
                       loadgen_workload("rate-fanout-q0", ["--publishers", "1", "--subscribers",
                                                           "200", "--qos", "0", "--rate", "300"]),
                       False),
    "fleet": ("fleet: simulated vehicles at 1 Hz, a dashboard subscriber (--verify), archive on",
              fleet_workload, True),
    "idle": ("connections: N idle clients, broker memory per connection", idle_workload, False),
    "latency": ("latency: 100 publishers -> 1 subscriber, QoS 1, 100 B, fixed 5000 msg/s",
                loadgen_workload("latency", ["--publishers", "100", "--subscribers", "1",
                                             "--qos", "1", "--rate", "5000"]), False),
}


@dataclass
class Context:
    fleetmq: str
    work: Path
    duration: int
    idle: int
    vehicles: int
    fleet_duration: int


# --------------------------------------------------------------------------------------------
# Report


def fmt(value, digits=1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def ratio(ours, theirs, higher_is_better=True) -> str:
    if not ours or not theirs:
        return "-"
    r = ours / theirs if higher_is_better else theirs / ours
    return f"{r:.2f}x"


def table(name: str, results: list[Result]) -> str:
    desc = WORKLOADS[name][0]
    lines = [f"### {name}", "", desc, ""]
    if name == "idle":
        lines += ["| broker | connections | failed | RSS before MiB | RSS after MiB | KiB per connection |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in results:
            lines.append(f"| {r.broker} | {fmt(r.connections)} | {r.failures} | "
                         f"{fmt(r.extra.get('rss_before_kib', 0) / 1024)} | "
                         f"{fmt(r.extra.get('rss_after_kib', 0) / 1024)} | "
                         f"{fmt(r.kib_per_conn, 2)} |")
    else:
        lines += ["| broker | msg/s | CPU s per M msg | msg per CPU-s | peak RSS MiB | p50 ms | "
                  "p99 ms | p99.9 ms | lost | wakes per msg | gen CPU s per M |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results:
            per_cpu = 1e6 / r.cpu_s_per_m if r.cpu_s_per_m else None
            lines.append(
                f"| {r.broker} | {fmt(r.msg_per_s, 0)} | {fmt(r.cpu_s_per_m, 2)} | "
                f"{fmt(per_cpu, 0)} | {fmt(r.peak_rss_mib)} | {fmt(r.p50_ms, 2)} | "
                f"{fmt(r.p99_ms, 2)} | {fmt(r.p999_ms, 2)} | {r.dropped} | "
                f"{fmt(r.wakes_per_msg, 3)} | {fmt(r.gen_cpu_s_per_m, 2)} |")
    ours = next((r for r in results if r.broker == "fleetmq"), None)
    if ours:
        lines.append("")
        for peer in results:
            if peer.broker.startswith("fleetmq"):
                continue
            if name == "idle":
                lines.append(f"- fleetmq vs {peer.broker}: memory per connection "
                             f"{ratio(ours.kib_per_conn, peer.kib_per_conn, False)} "
                             "(above 1: fleetmq uses less)")
                continue
            lines.append(
                f"- fleetmq vs {peer.broker}: msg per CPU-second "
                f"{ratio(ours.cpu_s_per_m, peer.cpu_s_per_m, False)}, msg/s "
                f"{ratio(ours.msg_per_s, peer.msg_per_s)}, p99 "
                f"{ratio(ours.p99_ms, peer.p99_ms, False)} (above 1: fleetmq better)")
    for r in results:
        if r.note:
            lines.append(f"- {r.broker}: {r.note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def find_brokers(args) -> list[Broker]:
    brokers = []
    for io in args.fleetmq_socket_io:
        for shards in args.fleetmq_shards:
            name = "fleetmq" if shards == max(args.fleetmq_shards) else f"fleetmq-{shards}shard"
            if io != args.fleetmq_socket_io[0]:
                name += f"-{io}-io"
            brokers.append(Broker(name, "fleetmq", args.fleetmq, shards, io))
    for kind in ("mosquitto", "rumqttd"):
        if kind not in args.brokers:
            continue
        path = shutil.which(kind) or next(
            (p for p in (f"/usr/sbin/{kind}", os.path.expanduser(f"~/.cargo/bin/{kind}"))
             if os.path.exists(p)), None)
        if path:
            brokers.append(Broker(kind, kind, path))
        else:
            print(f"note: {kind} is not installed; skipped", file=sys.stderr)
    return brokers


def default_fleetmq() -> str:
    for candidate in (os.environ.get("FLEETMQ"), ROOT / "target/release/fleetmq",
                      Path(os.environ.get("CARGO_TARGET_DIR", "/nonexistent")) / "release/fleetmq",
                      Path("/var/tmp/fleetmq-ci-target/release/fleetmq")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    sys.exit("no release build of fleetmq: run `cargo build --release` (or set FLEETMQ)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, from {', '.join(WORKLOADS)}")
    p.add_argument("--brokers", default="fleetmq,mosquitto,rumqttd")
    p.add_argument("--fleetmq-shards", default="2,1",
                   help="fleetmq is run once per shard count (the largest is 'fleetmq')")
    p.add_argument("--fleetmq-socket-io", default="epoll",
                   help="fleetmq is run once per socket I/O mode too (epoll, glommio); "
                        "the first is the one compared")
    p.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    p.add_argument("--idle", type=int, default=50_000,
                   help="idle connections (capped by the open-file limit of this machine)")
    p.add_argument("--vehicles", type=int, default=2000, help="vehicles in the fleet workload")
    p.add_argument("--fleet-duration", type=int, default=30,
                   help="seconds of the fleet workload (1 reading per vehicle and second)")
    p.add_argument("--fleetmq", default=None, help="the fleetmq binary (release build)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per workload and broker, in rounds; the table shows medians")
    p.add_argument("--out", default=None, help="write results as JSON here")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.fleetmq = args.fleetmq or default_fleetmq()
    args.fleetmq_shards = sorted({int(s) for s in args.fleetmq_shards.split(",")}, reverse=True)
    args.fleetmq_socket_io = args.fleetmq_socket_io.split(",")
    if "fleetmq" not in args.brokers.split(","):
        args.fleetmq_shards = []
    args.brokers = args.brokers.split(",")
    workloads = args.workloads.split(",")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; known: {list(WORKLOADS)}")

    # Both the broker and the load generator hold one descriptor per connection.
    limit = fd_limit()
    idle = min(args.idle, limit - 1000)
    if idle < args.idle:
        print(f"note: {args.idle} idle connections asked, {idle} possible: the open-file limit "
              f"is {limit} per process here (ulimit -n)", file=sys.stderr)

    brokers = find_brokers(args)
    work = Path(tempfile.mkdtemp(prefix="fleetmq-bench-"))
    ctx = Context(args.fleetmq, work, args.duration, idle, args.vehicles,
                  args.fleet_duration)
    print(f"# side by side: {', '.join(b.name for b in brokers)}; {os.cpu_count()} cores; "
          f"logs in {work}", flush=True)
    report = []
    all_results = []
    try:
        for name in workloads:
            desc, runner, archive = WORKLOADS[name]
            runs: dict[str, list[Result]] = {}
            # Rounds visit every broker in turn, so a slow spell of this shared machine falls
            # on all of them rather than on one.
            for round_no, broker in ((n, b) for n in range(1, args.repeat + 1) for b in brokers):
                if name == "idle" and broker.kind == "fleetmq" and broker.name != "fleetmq":
                    continue
                print(f"== {name} on {broker.name}" + (f" (round {round_no})" if args.repeat > 1 else ""),
                      file=sys.stderr, flush=True)
                run_dir = work / f"{name}-{broker.name}-{round_no}"
                run_dir.mkdir()
                ctx.work = run_dir
                running = None
                try:
                    running = Running(broker, run_dir, archive, args.fleetmq)
                    res = runner(ctx, running)
                    res.peak_rss_mib = running.memory()["VmHWM"] / 1024
                    if not running.alive():
                        res.note = "the broker died during the run"
                except Exception as e:  # one broker's failure must not hide the others
                    res = Result(name, broker.name, note=f"failed: {e}")
                finally:
                    if running is not None:
                        running.stop()
                if name == "fleet" and running is not None and res.delivered:
                    # Every reading the vehicles published must be in the archive, once.
                    counts = archived_readings(args.fleetmq, running.archive_dir)
                    res.extra.update(counts)
                    if counts.get("archived") != res.delivered or \
                            counts.get("archived_distinct") != res.delivered:
                        res.note = (f"archive holds {counts.get('archived', '?')} rows "
                                    f"({counts.get('archived_distinct', '?')} distinct) for "
                                    f"{res.delivered} readings published")
                runs.setdefault(broker.name, []).append(res)
                all_results.append(res)
                print(f"   {res}", file=sys.stderr, flush=True)
            results = [median_result(r) for r in runs.values()]
            section = table(name, results)
            if args.repeat > 1:
                section = section.replace("\n\n|", f"\n\nMedians of {args.repeat} runs per broker, "
                                          "each figure on its own.\n\n|", 1)
            report.append(section)
            print(section + "\n", flush=True)
    finally:
        if args.out:
            Path(args.out).write_text(json.dumps([r.__dict__ for r in all_results], indent=1))
        if os.environ.get("KEEP_LOGS") is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
