"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe).

Standard library only: Chromium reads CDP JSON messages, each ended by a NUL byte, on its fd 3 and
writes replies and events on its fd 4. That is all a test needs to load a page, evaluate
JavaScript, and take screenshots, without Selenium or a WebSocket client.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    # Keep timers and animation frames running at full rate in a headless, unfocused page.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--remote-debugging-pipe",
]


def find_chromium(explicit=None):
    for c in [explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium", "chromium",
              "chromium-browser", "google-chrome"]:
        if c and shutil.which(c):
            return shutil.which(c)
    raise SystemExit("chromium not found: apt-get install chromium (or set CHROMIUM=/path)")


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, executable=None, width=1440, height=900, log_path=None):
        self.profile = tempfile.mkdtemp(prefix="fleetmq-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def fds():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.log = open(log_path or os.devnull, "wb")
        self.proc = subprocess.Popen(
            [find_chromium(executable), *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=fds, pass_fds=(3, 4),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._lock = threading.Lock()
        self._waiting = {}
        self.events = []  # (method, params) of console errors and exceptions
        threading.Thread(target=self._read, daemon=True).start()
        self.width, self.height = width, height

    def _read(self):
        buf = b""
        f = os.fdopen(self._r, "rb", buffering=0)
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    slot = self._waiting.get(msg["id"])
                    if slot:
                        slot[1] = msg
                        slot[0].set()
                else:
                    self._event(msg)
        for slot in list(self._waiting.values()):
            slot[0].set()  # the browser is gone: wake every waiter

    def _event(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            self.events.append(("exception", text))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.events.append(("console.error", args))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            e = params["entry"]
            self.events.append(("log.error", f"{e.get('text')} {e.get('url', '')}".strip()))

    def send(self, method, params=None, session=None, timeout=30):
        with self._lock:
            self._next += 1
            mid = self._next
            slot = self._waiting[mid] = [threading.Event(), None]
            msg = {"id": mid, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            data = json.dumps(msg).encode() + b"\0"
            while data:
                data = data[os.write(self._w, data):]
        try:
            if not slot[0].wait(timeout):
                raise CdpError(f"{method}: no reply within {timeout} s")
        finally:
            del self._waiting[mid]
        reply = slot[1]
        if reply is None:
            raise CdpError(f"{method}: browser went away")
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def new_page(self, new_window=False):
        """A page; with `new_window`, in a window of its own, so that it keeps drawing (animation
        frames stop in a tab hidden behind another) while another page is in front."""
        target = self.send("Target.createTarget", {"url": "about:blank", "newWindow": new_window})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, session):
        self.b = browser
        self.s = session
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": browser.width, "height": browser.height, "deviceScaleFactor": 1, "mobile": False})

    def send(self, method, params=None, timeout=30):
        return self.b.send(method, params, self.s, timeout)

    def goto(self, url):
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CdpError(f"navigating to {url}: {r['errorText']}")

    def js(self, expression, timeout=30):
        r = self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True}, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError(f"{expression[:80]}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def wait_for(self, expression, timeout=30, what=None):
        """Polls `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.js(expression)
            except CdpError as e:
                last = str(e)
            else:
                if last:
                    return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what or expression} (last: {last!r})")

    def click(self, x, y):
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def wheel(self, x, y, delta_y):
        self.send("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0, "deltaY": delta_y})

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
