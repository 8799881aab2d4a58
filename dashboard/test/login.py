#!/usr/bin/env python3
"""Chromium against a broker that needs a password: the dispatch page logs in.

    login.py --base http://127.0.0.1:8080 --mqtt-port 1883 --publisher USER:PASSWORD \\
             --dispatcher USER:PASSWORD

The broker runs with a password file and an ACL that lets the dispatcher read GPS but not reefer
readings. A truck (--publisher) publishes one GPS and one reefer reading. In the page:

1. without credentials the broker refuses the page, which shows its login form;
2. a wrong password is refused, and the page says so;
3. the right one gets it live: the truck is listed with its position, and no reefer reading
   reaches it (the dispatcher's ACL applies to the page);
4. the password is in no web storage.

Needs python3 (standard library only) and Chromium. Exit status 0 when every check passes.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402
from checks import check, log, outcome  # noqa: E402
from mqttpub import Publisher  # noqa: E402





def login(page, user, password):
    page.js(f"document.getElementById('login-user').value = {json.dumps(user)}")
    page.js(f"document.getElementById('login-password').value = {json.dumps(password)}")
    page.js("document.querySelector('#login button').click()")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--publisher", required=True, help="USER:PASSWORD allowed to publish fleet/#")
    ap.add_argument("--dispatcher", required=True, help="USER:PASSWORD allowed to read fleet/+/gps only")
    ap.add_argument("--chromium")
    args = ap.parse_args()
    pub_user, pub_pw = args.publisher.split(":", 1)
    user, password = args.dispatcher.split(":", 1)

    now = int(time.time() * 1000)
    pub = Publisher("127.0.0.1", args.mqtt_port, "login-test-truck", username=pub_user, password=pub_pw)
    pub.publish("fleet/truck-7/status", "online", qos=1, retain=True)
    pub.wait_acks()

    out = tempfile.mkdtemp(prefix="fleetmq-login-")
    browser = Browser(args.chromium, log_path=os.path.join(out, "chromium.log"))
    ok = False
    try:
        page = browser.new_page()
        page.goto(args.base.rstrip("/") + "/")
        page.wait_for("!document.getElementById('login').hidden", what="the login form")
        check("needs a user name" in page.js("document.getElementById('login-error').textContent"),
              "the page asks for credentials")
        login(page, user, password + "-wrong")
        page.wait_for("document.getElementById('login-error').textContent.includes('refused')",
                      what="the refusal shown")
        check(not page.js("document.getElementById('login').hidden"), "a wrong password is refused, on the page")
        login(page, user, password)
        page.wait_for("document.getElementById('conn').textContent === 'Live'", what="the page going live")
        check(page.js("document.getElementById('login').hidden"), "logged in: the form is gone")
        # Live data after the login: one position and one reefer reading.
        pub.publish("fleet/truck-7/gps", json.dumps(
            {"ts": now, "seq": 1, "lat": 52.37, "lon": 4.89, "speed_kmh": 30.0, "heading_deg": 90.0}), qos=1)
        pub.publish("fleet/truck-7/reefer", json.dumps(
            {"ts": now, "seq": 2, "temp_c": 4.5, "setpoint_c": 4.0, "door_open": False, "compressor_on": True}),
            qos=1)
        pub.wait_acks()
        page.wait_for("fleetDashboard.fleet.vehicles.get('truck-7')?.x !== undefined", what="truck-7's position")
        time.sleep(0.5)  # the reefer reading, had it been delivered, came with the GPS one
        check(page.js("fleetDashboard.fleet.vehicles.get('truck-7').temp === undefined"),
              "no reefer reading reaches a dispatcher whose ACL allows GPS only")
        stored = page.js("JSON.stringify([Object.values(localStorage), Object.values(sessionStorage)])")
        check(password not in stored, "the password is in no web storage")
        page.screenshot(os.path.join(out, "logged-in.png"))
        ok = True
    except Exception as e:
        log(f"FAILED: {type(e).__name__}: {e}")
    finally:
        browser.close()
        pub.publish("fleet/truck-7/status", "", qos=1, retain=True)
        pub.wait_acks()
        pub.close()
    return outcome(ok)


if __name__ == "__main__":
    sys.exit(main())
