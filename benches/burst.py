#!/usr/bin/env python3
"""A burst of QoS 1 messages to one subscriber, with the Paho client, side by side.

A truck leaving a tunnel flushes an hour of store-and-forward, a backfill script replays a
day: one publisher sends a burst without waiting for acknowledgements (in flight as many as
the client allows), and one QoS 1 subscriber takes it. Two cases, each broker on defaults:

- the subscriber reads as fast as it can: how many messages arrive, and how long the burst
  takes from first publish to last delivery;
- the subscriber stops reading (a stuck dashboard): how long until the publisher has every
  acknowledgement (it must not be stalled for ever), and how many the stuck one lost.

    python3 benches/burst.py [--messages 20000] [--size 200]
"""

import argparse
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from single_connection import free_port, start_fleetmq, start_mosquitto  # noqa: E402


class Counter:
    def __init__(self):
        self.n = 0
        self.last = None
        self.cond = threading.Condition()

    def bump(self):
        with self.cond:
            self.n += 1
            self.last = time.perf_counter()
            self.cond.notify_all()

    def wait(self, count, limit):
        deadline = time.time() + limit
        with self.cond:
            while self.n < count and time.time() < deadline:
                self.cond.wait(deadline - time.time())
            return self.n


def client(port, name, **callbacks):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    for k, v in callbacks.items():
        setattr(c, k, v)
    return c


def burst(port, messages, size, stuck):
    received, acked = Counter(), Counter()
    subscribed = threading.Event()
    sub = client(port, "dashboard",
                 on_message=lambda c, u, m: received.bump(),
                 on_subscribe=lambda *a: subscribed.set())
    sub.connect("127.0.0.1", port)
    sub.subscribe("fleet/#", qos=1)
    sub.loop_start()
    subscribed.wait(10)
    if stuck:
        # Stops reading its socket: the broker's writes to it back up.
        sub.loop_stop()
    pub = client(port, "backfill", on_publish=lambda c, u, mid, rc, p: acked.bump())
    pub.max_inflight_messages_set(65535)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    payload = b"x" * size
    start = time.perf_counter()
    for n in range(messages):
        pub.publish(f"fleet/v{n % 100}/gps", payload, qos=1)
    got_acks = acked.wait(messages, 120)
    acked_s = (acked.last or start) - start
    if stuck:
        got = None
        took = None
    else:
        got = received.wait(messages, 120)
        took = (received.last or start) - start
    pub.loop_stop()
    pub.disconnect()
    if not stuck:
        sub.loop_stop()
    sub.disconnect()
    return got_acks, acked_s, got, took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    import shutil
    import tempfile
    print(f"\nA burst of {args.messages} QoS 1 messages of {args.size} bytes, one subscriber\n")
    print("| broker | subscriber | publisher acknowledged | in | subscriber received | burst delivered in |")
    print("|---|---|---:|---:|---:|---:|")
    for name in ["fleetmq fsync=always", "mosquitto"]:
        for stuck in (False, True):
            work = tempfile.mkdtemp(prefix="fleetmq-burst-")
            port = free_port()
            proc = (start_mosquitto(work, port) if name == "mosquitto"
                    else start_fleetmq(work, port, "always"))
            try:
                acks, acked_s, got, took = burst(port, args.messages, args.size, stuck)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                shutil.rmtree(work, ignore_errors=True)
            who = "stops reading" if stuck else "reads all it can"
            got_s = "-" if got is None else f"{got:,}"
            took_s = "-" if took is None else f"{took:.2f} s"
            print(f"| {name} | {who} | {acks:,} | {acked_s:.2f} s | {got_s} | {took_s} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
