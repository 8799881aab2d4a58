#!/usr/bin/env python3
"""Browser test of the dispatch page, against fleetmq or against mosquitto.

    run.py --base http://127.0.0.1:8080 --mqtt-port 1883   # fleetmq: page at {base}/, WebSocket at {base}/mqtt
    run.py --mosquitto                                      # starts mosquitto and a static server itself

Needs python3 (standard library only) and Chromium (Debian: apt-get install chromium); the
--mosquitto mode needs mosquitto too. Steps:

1. small fleet: 12 vehicles online and 1 offline (retained status), gps + reefer at QoS 1 in
   rounds; checks `#vehicles-online`, the list's rows, inferred depots, sorting, the excursion
   alarm of the one vehicle out of band, the offline alarm, the detail panel (screenshot); a
   dropped WebSocket (reconnect, resubscribe); a vehicle going quiet ("no data" alarm), then its
   Last Will (count drops to 11).
2. large fleet: 5000 retained statuses and a retained `fleet/_depots` must all reach the page
   before any live data (the broker's per-client queue must hold them: see --mosquitto's
   config, and the Rust test's); then 5000 vehicles at 1 Hz (10 000 messages/s, QoS 1); checks all 5000 are
   counted and listed (with only a window of rows in the DOM), then reports the page's frame
   times (draw time per frame, interval between frames, list refresh time); a screenshot.

Timings are reported, never asserted: the machine may be busy. Exit status 0 when every check
passes, 1 otherwise. Retained messages the test published are cleared at the end.
"""

import argparse
import functools
import http.server
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402
from checks import CheckFailed, check, log  # noqa: E402
from mqttpub import Publisher  # noqa: E402

DASHBOARD = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}  # modules need a JS type
DEPOTS = [("Rotterdam", 51.905, 4.465), ("Amsterdam", 52.39, 4.86), ("Utrecht", 52.06, 5.09),
          ("Eindhoven", 51.45, 5.45), ("Antwerp", 51.24, 4.42), ("Ghent", 51.06, 3.71),
          ("Breda", 51.58, 4.80), ("Nijmegen", 51.83, 5.84)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise CheckFailed(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class Mosquitto:
    """mosquitto with a WebSocket listener and a TCP listener, plus a static server for the page."""

    def __init__(self, workdir):
        self.ws_port, self.mqtt_port = free_port(), free_port()
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.ws_port} 127.0.0.1\nprotocol websockets\n"
                    f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n"
                    # A dashboard receives every vehicle's retained status when it subscribes:
                    # the default queue (1000 QoS 1 messages) would drop most of a large fleet's.
                    "max_queued_messages 100000\n")
        self.log = open(os.path.join(workdir, "mosquitto.log"), "wb")
        self.proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                                     stdout=self.log, stderr=self.log)
        wait_port(self.ws_port)
        wait_port(self.mqtt_port)
        handler = functools.partial(Quiet, directory=DASHBOARD)
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.page = (f"http://127.0.0.1:{self.http.server_port}/index.html"
                     f"?mqtt=ws://127.0.0.1:{self.ws_port}/mqtt")

    def stop(self):
        self.http.shutdown()
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

    def log_message(self, *args):
        pass


def check_static(base):
    """The broker serves every file of the page with a type the browser accepts."""
    names = sorted(n for n in os.listdir(DASHBOARD) if os.path.splitext(n)[1] in TYPES)
    for name in ["", *names]:
        ctype = TYPES[os.path.splitext(name)[1] or ".html"]
        with urllib.request.urlopen(f"{base}/{name}", timeout=10) as r:
            got = r.headers.get("Content-Type", "")
            body = r.read()
        ok = got.startswith(ctype) or (ctype == "text/javascript" and got.startswith("application/javascript"))
        check(ok and len(body) > 0, f"GET /{name} serves {len(body)} bytes as {got!r}")


class SimVehicle:
    """A vehicle driving straight-ish lines, with a reefer near its setpoint unless told otherwise."""

    def __init__(self, vid, rng, depot, spread_km, setpoint, speed, temp_offset=0.0, start_seq=0):
        self.id = vid
        _, dlat, dlon = depot
        r = spread_km * math.sqrt(rng.random())
        a = rng.random() * 2 * math.pi
        self.lat = dlat + r * math.cos(a) / 111.0
        self.lon = dlon + r * math.sin(a) / (111.0 * math.cos(math.radians(dlat)))
        self.heading = rng.uniform(0, 360)
        self.speed = speed
        self.setpoint = setpoint
        self.temp_offset = temp_offset
        self.seq = start_seq
        self.rng = rng

    def step(self, dt_s):
        self.heading = (self.heading + self.rng.uniform(-12, 12)) % 360
        km = self.speed * dt_s / 3600
        h = math.radians(self.heading)
        self.lat += km * math.cos(h) / 111.0
        self.lon += km * math.sin(h) / (111.0 * math.cos(math.radians(self.lat)))

    def messages(self, ts):
        gps = (f'{{"ts":{ts},"seq":{self.seq},"lat":{self.lat:.6f},"lon":{self.lon:.6f},'
               f'"speed_kmh":{self.speed:.1f},"heading_deg":{self.heading:.1f},"hdop":0.9}}')
        temp = self.setpoint + self.temp_offset + self.rng.uniform(-0.6, 0.6)
        reefer = (f'{{"ts":{ts},"seq":{self.seq + 1},"temp_c":{temp:.2f},"setpoint_c":{self.setpoint},'
                  f'"door_open":false,"compressor_on":true,"ambient_c":17.5}}')
        self.seq += 2
        return [(f"fleet/{self.id}/gps", gps), (f"fleet/{self.id}/reefer", reefer)]


def text(page, selector):
    return page.js(f"document.querySelector({json.dumps(selector)}).textContent.trim()")


def list_ids(page):
    return page.js("[...document.querySelectorAll('#vehicle-list tbody tr[data-id]')].map(r => r.dataset.id)")


def small_fleet(args, page, pub, shots):
    log("small fleet: 12 online, 1 offline")
    rng = random.Random(7)
    vehicles = []
    for i in range(12):
        depot = DEPOTS[i % 2]
        stopped = i in (4, 9)
        offset = 5.5 if i == 2 else 0.0  # TRK-03 runs warm: an excursion
        # Setpoints whose readings (± 0.6 °C) stay inside both the page's own band (setpoint ± 3)
        # and the broker's cold-chain rules (2–8 °C chilled, -30 to -15 °C frozen).
        vehicles.append(SimVehicle(f"TRK-{i + 1:02d}", rng, depot, 0.3, [4, -18, 5][i % 3],
                                   0 if stopped else rng.uniform(55, 85), offset))
    for v in vehicles:
        pub.publish(f"fleet/{v.id}/status", "online", qos=1, retain=True)
    pub.publish("fleet/TRK-13/status", "offline", qos=1, retain=True)
    pub.wait_acks()

    # A short offline timer (query parameter), so the "no data" alarm can be seen at the end.
    page.goto(args.page + ("&" if "?" in args.page else "?") + "offline=10")
    page.wait_for("window.fleetDashboard && fleetDashboard.connState === 'subscribed'", 20, "the page to subscribe")
    page.wait_for("document.getElementById('vehicles-online').textContent === '12'", 10,
                  "#vehicles-online to count the 12 retained online statuses")

    # Rounds of readings, 30 s of fleet time apart; the first fix (seq 0) marks each vehicle's depot.
    t0 = int(time.time() * 1000) - 10 * 30_000
    for k in range(10):
        for v in vehicles:
            for topic, payload in v.messages(t0 + k * 30_000):
                pub.publish(topic, payload, qos=1)
            if k < 9 and v.speed:
                v.step(30 * 6)  # six times the speed: tracks long enough to see at this zoom
        pub.wait_acks()
        time.sleep(0.1)

    page.wait_for("fleetDashboard.fleet.vehicles.get('TRK-12')?.temps?.n === 10", 10, "all readings to arrive")
    time.sleep(0.6)  # one list/alarm refresh
    check(text(page, "#vehicles-online") == "12", "#vehicles-online shows 12")
    check(text(page, "#vehicles-total") == "13", "13 vehicles known (12 online + 1 offline)")
    ids = list_ids(page)
    check(len(ids) == 13 and sorted(ids) == [f"TRK-{i:02d}" for i in range(1, 14)],
          f"the list has 13 rows, one per vehicle ({len(ids)})")
    check(page.js("fleetDashboard.fleet.depots.length") == 2, "two depots inferred from first positions")
    alarms = page.js("[...document.querySelectorAll('#alarms li.alarm')].map(li => li.className + ' ' + li.dataset.id)")
    check("alarm excursion TRK-03" in alarms, f"excursion alarm for TRK-03 ({alarms})")
    check("alarm offline TRK-13" in alarms, "offline alarm for TRK-13")
    check(len([a for a in alarms if "excursion" in a]) == 1, "no other vehicle has an excursion")

    # Sorting: by reefer deviation, descending puts the warm one first.
    page.js("document.querySelector('th[data-key=temp]').click()")
    page.js("document.querySelector('th[data-key=temp]').click()")
    check(list_ids(page)[0] == "TRK-03", "sorting by reefer °C (descending) puts TRK-03 first")
    page.js("document.querySelector('th[data-key=id]').click()")
    check(list_ids(page)[:3] == ["TRK-01", "TRK-02", "TRK-03"], "sorting by vehicle id")

    page.js("document.querySelector('#alarms li.excursion').click()")
    page.wait_for("!document.getElementById('detail').hidden", 5, "the detail panel")
    check("TRK-03" in text(page, "#detail-title"), "clicking the alarm opens TRK-03's details")
    check(page.js("document.querySelector('#vehicle-list tr.sel')?.dataset.id") == "TRK-03", "and selects its row")
    time.sleep(0.5)
    shots.append(page.screenshot(os.path.join(args.out, "dashboard-small.png")))
    log(f"  screenshot: {shots[-1]}")

    # The map: clicking a marker selects its vehicle; the wheel zooms and stops auto-fit.
    x, y = page.js("(() => { const m = fleetDashboard.map, v = fleetDashboard.fleet.vehicles.get('TRK-07');"
                   " const r = m.top.getBoundingClientRect(), [sx, sy] = m.toScreen(v.x, v.y);"
                   " return [r.left + sx, r.top + sy]; })()")
    page.click(x, y)
    page.wait_for("document.getElementById('detail-title').textContent.includes('TRK-07')", 5,
                  "a click on TRK-07's marker to select it")
    check(True, "clicking TRK-07's marker on the map opens its details")
    page.wheel(x, y, -300)
    check(page.js("fleetDashboard.map.autoFit") is False, "zooming with the wheel turns auto-fit off")
    page.js("document.getElementById('fit').click()")
    check(page.js("fleetDashboard.map.autoFit") is True, "the Fit button turns it back on")

    # Drop the WebSocket: the client must reconnect, resubscribe, and keep receiving.
    before = page.js("fleetDashboard.client.received")
    page.js("fleetDashboard.client.ws.close()")
    page.wait_for("fleetDashboard.connState !== 'subscribed'", 5, "the page to notice the drop")
    page.wait_for("fleetDashboard.connState === 'subscribed'", 15, "the page to reconnect")
    for v in vehicles:
        for topic, payload in v.messages(t0 + 10 * 30_000):
            pub.publish(topic, payload, qos=1)
    pub.wait_acks()
    page.wait_for(f"fleetDashboard.client.received >= {before} + 13 + 24", 10, "messages after the reconnect")
    time.sleep(0.3)
    check(text(page, "#vehicles-online") == "12", "still 12 online after reconnecting")

    # TRK-12 stays connected but goes quiet; the others keep reporting.
    deadline = time.monotonic() + 25
    k = 11
    silent = "fleetDashboard.fleet.alarms().some(a => a.kind === 'silent' && a.id === 'TRK-12')"
    while not page.js(silent) and time.monotonic() < deadline:
        for v in vehicles[:11]:
            for topic, payload in v.messages(t0 + k * 30_000):
                pub.publish(topic, payload, qos=1)
        pub.wait_acks()
        k += 1
        time.sleep(1)
    check(page.js(silent), "a 'no data' alarm for TRK-12 after 10 s of silence")
    alarms = page.js("fleetDashboard.fleet.alarms().map(a => a.kind + ' ' + a.id)")
    check(sorted(alarms) == ["excursion TRK-03", "offline TRK-13", "silent TRK-12"], f"and no other alarm ({alarms})")
    check(text(page, "#vehicles-online") == "12", "a silent vehicle still counts as online (its status is online)")
    # Then its Last Will arrives: offline.
    pub.publish("fleet/TRK-12/status", "offline", qos=1, retain=True)
    pub.wait_acks()
    page.wait_for("document.getElementById('vehicles-online').textContent === '11'", 5, "the count to drop to 11")
    check(page.js("fleetDashboard.fleet.alarms().some(a => a.kind === 'offline' && a.id === 'TRK-12')"),
          "TRK-12's offline status drops the count to 11 and raises an offline alarm")
    return [v.id for v in vehicles] + ["TRK-13"]


def large_fleet(args, page, pub, shots):
    n = args.vehicles
    log(f"large fleet: {n} vehicles at 1 Hz")
    rng = random.Random(11)
    vehicles = [SimVehicle(f"V{i:04d}", rng, DEPOTS[i % len(DEPOTS)], 25, [4, -18, 5, 3][i % 4],
                           0 if i % 7 == 0 else rng.uniform(30, 95), 6.0 if i % 200 == 3 else 0.0,
                           start_seq=1000)
                for i in range(n)]
    for v in vehicles:
        pub.publish(f"fleet/{v.id}/status", "online", qos=1, retain=True)
    pub.publish("fleet/_depots", json.dumps([{"name": d[0], "lat": d[1], "lon": d[2]} for d in DEPOTS]),
                qos=1, retain=True)
    pub.wait_acks(60)

    page.goto(args.page)
    page.wait_for("window.fleetDashboard && fleetDashboard.connState === 'subscribed'", 20, "the page to subscribe")
    # The retained state alone (before any live data) must show the whole fleet: every status,
    # and the depots. A broker that drops retained messages beyond its per-client queue (mosquitto
    # and fleetmq both do, at QoS 1 past max_queued_messages) fails here, not later.
    page.wait_for(f"document.getElementById('vehicles-online').textContent === '{n}'", 30,
                  f"#vehicles-online to count the {n} retained online statuses")
    check(True, f"#vehicles-online shows {n} from retained statuses alone")
    depots = page.js("fleetDashboard.fleet.depots.map(d => d.name)")
    check(len(depots) == len(DEPOTS), f"the depots of the retained fleet/_depots message are shown ({depots})")
    page.js("window.__long = []; new PerformanceObserver(l => l.getEntries().forEach(e => __long.push(e.duration)))"
            ".observe({type: 'longtask'})")

    # 1 Hz per vehicle, spread over each second in ten slices; fleet time runs 30x (like --speedup).
    stop = threading.Event()
    sent = [0]
    t0 = int(time.time() * 1000)

    def feed():
        k = 0
        while not stop.is_set():
            start = time.monotonic()
            for s in range(10):
                for v in vehicles[s::10]:
                    for topic, payload in v.messages(t0 + k * 30_000 + s * 3000):
                        pub.publish(topic, payload, qos=args.qos)
                    v.step(30)
                    sent[0] += 2
                pub.flush()
                time.sleep(max(0, start + (s + 1) * 0.1 - time.monotonic()))
            k += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        page.wait_for(f"[...fleetDashboard.fleet.vehicles.values()].filter(v => v.x !== undefined).length === {n}",
                      30, f"positions of all {n} vehicles")
        page.js("fleetDashboard.resetPerf(); window.__long.length = 0")
        received0 = page.js("fleetDashboard.client.received")
        sent0 = sent[0]
        log(f"  measuring for {args.seconds} s while publishing")
        time.sleep(args.seconds)
        stats = page.js("fleetDashboard.perfStats()")
        long_tasks = page.js("window.__long.slice()")
        received = page.js("fleetDashboard.client.received") - received0
        published = sent[0] - sent0
        check(text(page, "#vehicles-online") == str(n), f"#vehicles-online shows {n}")
        check(page.js("document.getElementById('vehicle-list').dataset.total") == str(n), f"the list holds {n} vehicles")
        rows = len(list_ids(page))
        check(0 < rows < 120, f"only a window of the list is in the DOM ({rows} rows)")
        exc = page.js("fleetDashboard.fleet.alarms().filter(a => a.kind === 'excursion').length")
        check(exc == len([v for v in vehicles if v.temp_offset]), f"{exc} excursion alarms, one per warm vehicle")
        shots.append(page.screenshot(os.path.join(args.out, "dashboard-5000.png")))
        log(f"  screenshot: {shots[-1]}")
    finally:
        stop.set()
        feeder.join()
    rate = published / args.seconds
    if rate < 0.9 * 2 * n:
        log(f"  WARNING: published {rate:.0f} messages/s, short of the {2 * n}/s aimed at "
            "(a slow broker or machine): the frame times were not measured at full load")
    return [v.id for v in vehicles], {
        **stats, "seconds": args.seconds, "qos": args.qos, "published": published,
        "publishedPerSecond": round(rate), "targetPerSecond": 2 * n, "receivedByPage": received,
        "longTasks": {"count": len(long_tasks), "maxMs": max(long_tasks, default=0),
                      "totalMs": round(sum(long_tasks), 1)},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="broker's HTTP base URL: page at {base}/, WebSocket at {base}/mqtt")
    ap.add_argument("--mqtt-port", type=int, help="broker's MQTT/TCP port on 127.0.0.1, for publishing")
    ap.add_argument("--mosquitto", action="store_true", help="start mosquitto and serve the page from this folder")
    ap.add_argument("--vehicles", type=int, default=5000, help="size of the large fleet (default 5000)")
    ap.add_argument("--qos", type=int, choices=(0, 1), default=1,
                    help="QoS of the large fleet's readings (default 1: the page acknowledges each)")
    ap.add_argument("--seconds", type=float, default=15, help="how long to measure frame times (default 15)")
    ap.add_argument("--out", help="where screenshots and report.json go (default: a temporary folder)")
    ap.add_argument("--chromium", help="browser executable (default: $CHROMIUM or /usr/bin/chromium)")
    args = ap.parse_args()
    if bool(args.base) == args.mosquitto or (args.base and not args.mqtt_port):
        ap.error("give either --base URL --mqtt-port PORT, or --mosquitto")
    args.out = args.out or tempfile.mkdtemp(prefix="fleetmq-dashboard-")
    os.makedirs(args.out, exist_ok=True)

    broker = None
    browser = None
    page = None
    pub = None
    shots = []
    published_ids = []
    report = {"ok": False}
    try:
        if args.mosquitto:
            broker = Mosquitto(args.out)
            args.page, args.mqtt_port = broker.page, broker.mqtt_port
            log(f"mosquitto: ws {broker.ws_port}, mqtt {broker.mqtt_port}; page {args.page}")
        else:
            args.base = args.base.rstrip("/")
            args.page = args.base + "/"
            wait_port(args.mqtt_port)
            log(f"broker: page {args.page}, mqtt 127.0.0.1:{args.mqtt_port}")
            check_static(args.base)
        pub = Publisher("127.0.0.1", args.mqtt_port, f"dashboard-test-{os.getpid()}")
        browser = Browser(args.chromium, log_path=os.path.join(args.out, "chromium.log"))
        page = browser.new_page()

        published_ids += small_fleet(args, page, pub, shots)
        for vid in published_ids:  # the small fleet leaves, so the large one is counted alone
            pub.publish(f"fleet/{vid}/status", "", qos=1, retain=True)
        pub.wait_acks()
        ids, perf = large_fleet(args, page, pub, shots)
        published_ids += ids
        report["frames"] = perf

        errors = [e for e in browser.events if e[0] != "log.error" or "/mqtt" not in e[1]]
        check(not errors, f"no errors in the page ({errors[:5]})")
        report["ok"] = True
    except Exception as e:  # a failed check, a timeout, or a broken browser or broker
        report["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {report['error']}")
        if browser:
            log(f"page errors: {browser.events[:10]}")
        if page:
            try:
                shots.append(page.screenshot(os.path.join(args.out, "failure.png")))
                log(f"  screenshot: {shots[-1]}")
            except Exception:
                pass
    finally:
        if pub:
            try:
                for vid in published_ids:
                    pub.publish(f"fleet/{vid}/status", "", qos=1, retain=True)
                pub.publish("fleet/_depots", "", qos=1, retain=True)
                pub.wait_acks(30)
            except Exception as e:
                log(f"clearing retained messages failed: {e}")
            pub.close()
        if browser:
            browser.close()
        if broker:
            broker.stop()
    report["screenshots"] = shots
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    log(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
