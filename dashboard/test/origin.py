#!/usr/bin/env python3
"""Chromium against the broker's Origin check (cross-site WebSocket hijacking).

    origin.py --base http://127.0.0.1:8080

A page served from another origin (a static server this script starts on another port) tries to
open MQTT over WebSocket at {base}/mqtt, as a malicious site open in a dispatcher's browser
would: the broker must refuse the upgrade. The same attempt from the broker's own dashboard
page must succeed. Exit status 0 when both hold.

Needs python3 (standard library only) and Chromium (Debian: apt-get install chromium).
"""

import argparse
import functools
import http.server
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402
from checks import log, outcome  # noqa: E402


# Opens a WebSocket with subprotocol mqtt and says whether it opened.
PROBE = """
new Promise(resolve => {
    const ws = new WebSocket(%r, ["mqtt"]);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onerror = () => resolve("refused");
    setTimeout(() => resolve("timeout"), 10000);
})
"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the broker's HTTP base URL")
    ap.add_argument("--chromium", help="browser executable (default: $CHROMIUM or /usr/bin/chromium)")
    args = ap.parse_args()
    base = args.base.rstrip("/")
    ws_url = base.replace("http://", "ws://", 1) + "/mqtt"

    site = tempfile.mkdtemp(prefix="fleetmq-other-origin-")
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("<!doctype html><title>another site</title><p>another site</p>\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{server.server_address[1]}/"

    browser = Browser(args.chromium, log_path=os.path.join(site, "chromium.log"))
    ok = True
    try:
        page = browser.new_page()
        page.goto(other)
        page.wait_for("document.readyState === 'complete'", what="the other site's page")
        got = page.js(PROBE % ws_url)
        log(f"from {other}: {got}")
        ok &= got == "refused"
        page.goto(base + "/")
        page.wait_for("document.readyState === 'complete'", what="the dashboard")
        got = page.js(PROBE % ws_url)
        log(f"from {base}/: {got}")
        ok &= got == "open"
    finally:
        browser.close()
        server.shutdown()
    return outcome(ok)


if __name__ == "__main__":
    sys.exit(main())
