#!/usr/bin/env python3
"""Chromium and `fleetmq report excursions` judge one excursion alike.

    excursion.py --base http://127.0.0.1:8080 --mqtt-port 1883 --fleetmq BIN --data DIR

The broker (with its archive in DIR, cutting files every second) publishes its cold-chain rules
as the retained `fleet/_config/coldchain`. A reefer set to 4 °C reports every 30 s of reading
time: in band, then 9.5 °C for six minutes, then in band again. The page must raise its alarm
once the excursion lasted the rules' `alarm_after_s` and clear it with the first reading back in
band; the report over the archive must find one excursion whose start and end lie within one
reading interval of the page's. A second vehicle runs warm too; acknowledging the first one's
alarm on one page shows it acknowledged on a second page as well, below the unacknowledged one.

Needs python3 (standard library only) and Chromium. Exit status 0 when every check passes.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402
from checks import check, log, outcome  # noqa: E402
from mqttpub import Publisher  # noqa: E402

VEHICLE = "reefer-9"
OTHER = "reefer-8"  # warm throughout: an alarm nobody acknowledges
T0 = 1_736_157_600_000  # 2025-01-06 10:00 UTC
EVERY = 30_000




def reading(k, temp):
    return json.dumps({"ts": T0 + k * EVERY, "seq": k, "temp_c": temp, "setpoint_c": 4.0,
                       "door_open": False, "compressor_on": True})


def ms(text):
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--fleetmq", required=True, help="the fleetmq binary, for its report")
    ap.add_argument("--data", required=True, help="the broker's archive")
    ap.add_argument("--chromium")
    args = ap.parse_args()

    # A short simulated run first: it leaves the fleet's map (streets, depots, customers) as the
    # retained fleet/_world, which the page must draw.
    sim = subprocess.run([args.fleetmq, "simulate", "--broker", f"mqtt://127.0.0.1:{args.mqtt_port}",
                          "--vehicles", "5", "--duration", "2s", "--speedup", "30", "--threads", "1"],
                         capture_output=True, text=True)
    if sim.returncode != 0:
        log(sim.stderr)
        return 1
    pub = Publisher("127.0.0.1", args.mqtt_port, "excursion-test")
    out = tempfile.mkdtemp(prefix="fleetmq-excursion-")
    browser = Browser(args.chromium, log_path=os.path.join(out, "chromium.log"))
    ok = False
    try:
        page = browser.new_page()
        page.goto(args.base.rstrip("/") + "/")
        page.wait_for("document.getElementById('conn').textContent === 'Live'", what="the page going live")
        roads = page.wait_for("fleetDashboard.fleet.world?.roads.length", what="the simulator's world")
        check(roads >= 20, f"the page has the world's {roads} streets")
        depots = page.js("fleetDashboard.fleet.depots.map(d => d.name)")
        check(depots and all(d.startswith("depot-") for d in depots), f"and its depots {depots}")
        page.screenshot(os.path.join(out, "world.png"))
        rules = page.wait_for("fleetDashboard.fleet.rules", what="the broker's cold-chain rules")
        log(f"rules: {rules}")
        page.wait_for("document.getElementById('set-band').disabled", what="the band setting to give way")
        check(True, "the page's own band gives way to the rules")

        temps = [5.0] * 4 + [9.5] * 12 + [5.0] * 4
        alarm_at = None
        cleared_at = None
        page_start = None
        second = browser.new_page(new_window=True)  # another dispatcher's page
        second.goto(args.base.rstrip("/") + "/")
        second.wait_for("document.getElementById('conn').textContent === 'Live'", what="the second page going live")
        acked = False
        for k, temp in enumerate(temps):
            pub.publish(f"fleet/{VEHICLE}/reefer", reading(k, temp), qos=1)
            pub.publish(f"fleet/{OTHER}/reefer", reading(k, 9.0), qos=1)
            pub.wait_acks()
            page.wait_for(f"fleetDashboard.fleet.vehicles.get('{VEHICLE}')?.reeferTs === {T0 + k * EVERY}",
                          what=f"reading {k}")
            alarm = page.js(f"fleetDashboard.fleet.alarms(Date.now()).some(a => a.kind === 'excursion' && a.id === '{VEHICLE}')")
            start = page.js(f"fleetDashboard.fleet.vehicles.get('{VEHICLE}').excursionStart")
            if alarm and alarm_at is None:
                alarm_at, page_start = k, start
            if alarm and not acked and k >= 10:
                # Acknowledged on the first page: the second page shows it acknowledged, below
                # the other vehicle's alarm, which nobody acknowledged.
                page.wait_for(f"!!document.querySelector('#alarms li[data-id=\"{VEHICLE}\"] button.ack')",
                              what="the Ack button")
                page.js(f"document.querySelector('#alarms li[data-id=\"{VEHICLE}\"] button.ack').click()")
                order = second.wait_for(
                    "(() => { const li = [...document.querySelectorAll('#alarms li.alarm')];"
                    f" const mine = li.find(l => l.dataset.id === '{VEHICLE}');"
                    " return mine && mine.classList.contains('acked') && li.map(l => l.dataset.id + (l.classList.contains('acked') ? ':acked' : '')); })()",
                    what="the acknowledgement on the second page")
                # (The simulated trucks of the first step are offline: unacknowledged alarms too.)
                check(order[-1] == f"{VEHICLE}:acked" and OTHER in order[:-1],
                      f"acknowledged on both pages, below every unacknowledged alarm: {order}")
                acked = True
            if alarm_at is not None and not alarm and cleared_at is None:
                cleared_at = k
        check(alarm_at is not None, f"the page raised the alarm (at reading {alarm_at})")
        check((alarm_at - 4) * EVERY >= rules["alarm_after_s"] * 1000,
              "not before the excursion lasted the rules' alarm_after_s")
        check(acked, "an acknowledgement was given and shared")
        check(cleared_at == 16, f"the alarm cleared with the first reading back in band ({cleared_at})")
        page_end = T0 + cleared_at * EVERY

        # The report over the archive, once the broker published the file.
        report = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = subprocess.run([args.fleetmq, "report", "excursions", "--data", args.data,
                                  "--vehicle", VEHICLE, "--format", "json"],
                                 capture_output=True, text=True)
            if run.returncode == 0:
                rows = json.loads(run.stdout or "[]")
                if rows and rows[0].get("closed"):
                    report = rows
                    break
            time.sleep(0.5)
        check(report is not None and len(report) == 1, f"the report finds one closed excursion: {report}")
        start, end = ms(report[0]["start"]), ms(report[0]["end"])
        log(f"page: {page_start}..{page_end}; report: {start}..{end}")
        check(abs(start - page_start) <= EVERY, "the report's start is within one reading of the page's")
        check(abs(end - page_end) <= EVERY, "the report's end is within one reading of the page's")
        ok = True
    except Exception as e:
        log(f"FAILED: {type(e).__name__}: {e}")
    finally:
        browser.close()
        pub.close()
    return outcome(ok)


if __name__ == "__main__":
    sys.exit(main())
