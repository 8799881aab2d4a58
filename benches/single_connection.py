#!/usr/bin/env python3
"""One connection carrying a gateway's load: QoS 1 GPS readings to archived topics.

A telematics gateway, a bridge or a backfill script sends a whole fleet over one MQTT
connection. This measures, with the Paho client (not ours) and side by side in one run:

- acknowledged messages per second with N messages in flight (flat out on one connection);
- publish-to-PUBACK latency of a lone message at a fixed 10 msg/s (p50, p99);
- broker CPU seconds over each phase, from /proc.

Brokers: fleetmq (release build, archive on, fsync "always" and "batch") and mosquitto
(persistence on, autosave every second: what a mosquitto user runs; it has no per-message
fsync, which is the difference fleetmq's "always" pays for).

    python3 benches/single_connection.py [--messages 20000] [--inflight 20] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_listening(port, proc, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"broker exited while starting: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("broker did not start")


def start_fleetmq(work, port, fsync):
    binary = os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "fleetmq"
    )
    config = os.path.join(work, "fleetmq.toml")
    with open(config, "w") as f:
        f.write(f'[persistence]\nfsync = "{fsync}"\n')
    proc = subprocess.Popen(
        [binary, "broker", "--config", config, "--mqtt", f"127.0.0.1:{port}", "--http", "off",
         "--data", os.path.join(work, "data")],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "broker.log"), "w"),
    )
    wait_listening(port, proc)
    return proc


def start_mosquitto(work, port):
    config = os.path.join(work, "mosquitto.conf")
    with open(config, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {work}/\nautosave_interval 1\nset_tcp_nodelay true\n"
        )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc


class Gateway:
    """One Paho connection that counts PUBACKs."""

    def __init__(self, port, inflight):
        self.acked = 0
        self.lock = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gateway",
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self.on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            self.acked += 1
            self.lock.notify_all()

    def wait_acked(self, count, limit=600):
        deadline = time.time() + limit
        with self.lock:
            while self.acked < count:
                left = deadline - time.time()
                if left <= 0:
                    sys.exit(f"only {self.acked} of {count} acknowledged in {limit} s")
                self.lock.wait(left)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def reading(n, vehicles=200):
    vehicle, seq = n % vehicles, n // vehicles
    payload = json.dumps({"ts": 1764000000000 + seq * 1000, "seq": seq, "lat": 52.1,
                          "lon": 4.3, "speed_kmh": 61.5, "heading_deg": 90})
    return f"fleet/gw-{vehicle}/gps", payload


def measure(proc, port, messages, inflight):
    gateway = Gateway(port, inflight)
    payloads = [reading(n) for n in range(messages)]
    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
    for topic, payload in payloads:
        gateway.client.publish(topic, payload, qos=1)
    gateway.wait_acked(messages)
    elapsed = time.perf_counter() - t0
    flat_cpu = cpu_seconds(proc.pid) - cpu0
    # Lone messages at 10 msg/s: each waits for its own PUBACK.
    latencies = []
    cpu1 = cpu_seconds(proc.pid)
    start = time.perf_counter()
    for i in range(100):
        topic, payload = reading(messages + i)
        before = gateway.acked
        t = time.perf_counter()
        gateway.client.publish(topic, payload, qos=1)
        gateway.wait_acked(before + 1)
        latencies.append((time.perf_counter() - t) * 1000)
        next_tick = start + (i + 1) * 0.1
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    lone_cpu = cpu_seconds(proc.pid) - cpu1
    gateway.close()
    latencies.sort()
    return {
        "acked_per_s": messages / elapsed,
        "cpu_s_per_million": flat_cpu / messages * 1e6,
        "lone_p50_ms": statistics.median(latencies),
        "lone_p99_ms": latencies[98],
        "lone_cpu_s": lone_cpu,
    }


def run(name, messages, inflight):
    work = tempfile.mkdtemp(prefix="fleetmq-single-")
    port = free_port()
    try:
        if name == "mosquitto":
            proc = start_mosquitto(work, port)
        else:
            proc = start_fleetmq(work, port, name.split("fsync=")[1])
        try:
            return measure(proc, port, messages, inflight)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--inflight", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--brokers", default="fleetmq fsync=always,fleetmq fsync=batch,mosquitto")
    args = parser.parse_args()
    brokers = args.brokers.split(",")
    results = {b: [] for b in brokers}
    for round_ in range(args.rounds):
        for broker in brokers:
            r = run(broker, args.messages, args.inflight)
            results[broker].append(r)
            print(f"round {round_ + 1} {broker}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()),
                  file=sys.stderr)
    print(f"\n{args.messages} QoS 1 readings on one connection, {args.inflight} in flight; "
          f"medians of {args.rounds} rounds\n")
    print("| broker | acknowledged/s | broker CPU s per million | lone message p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for broker in brokers:
        rs = results[broker]
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"| {broker} | {med['acked_per_s']:,.0f} | {med['cpu_s_per_million']:.1f} | "
              f"{med['lone_p50_ms']:.2f} | {med['lone_p99_ms']:.2f} |")


if __name__ == "__main__":
    main()
