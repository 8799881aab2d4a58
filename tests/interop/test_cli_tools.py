"""Interoperability with the mosquitto command line clients (libmosquitto), run as subprocesses."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

VERSIONS = ["mqttv31", "mqttv311", "mqttv5"]
DEADLINE = 10  # seconds any one command may run


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install mosquitto-clients")
    return path


def _conn_args(broker, version: str, client_id: str) -> list[str]:
    return ["-h", broker.host, "-p", str(broker.port), "-V", version, "-i", client_id]


def pub(broker, version: str, client_id: str, topic: str, payload: str | None, *extra: str) -> None:
    """Runs mosquitto_pub; a payload of None sends a zero-length message (-n)."""
    body = ["-n"] if payload is None else ["-m", payload]
    cmd = [_tool("mosquitto_pub"), *_conn_args(broker, version, client_id), "-t", topic, *body, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, f"{cmd} failed: {done.stderr}"


class Sub:
    """A running mosquitto_sub whose output lines are read by a thread into a queue."""

    def __init__(self, broker, version: str, client_id: str, topic: str, *extra: str):
        # Line-buffered: debug lines (SUBACK) are otherwise held in stdio's pipe buffer.
        cmd = [
            _tool("stdbuf"), "-oL", _tool("mosquitto_sub"), *_conn_args(broker, version, client_id), "-t", topic,
            "-W", str(DEADLINE), "-F", "MSG|%r|%q|%t|%p", *extra,
        ]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def wait_for(self, predicate, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.cmd}: nothing matching within {timeout}s; saw {self.all}") from None
            if line is None:
                raise AssertionError(f"{self.cmd} ended; saw {self.all}")
            self.all.append(line)
            if predicate(line):
                return line

    def message(self, timeout: float = 5.0) -> tuple[bool, int, str, str]:
        """(retained, qos, topic, payload) of the next message printed."""
        line = self.wait_for(lambda s: s.startswith("MSG|"), timeout)
        _, retained, qos, topic, payload = line.split("|", 4)
        return retained == "1", int(qos), topic, payload

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=DEADLINE)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def subs():
    made: list[Sub] = []

    def make(*args, **kwargs) -> Sub:
        s = Sub(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.mark.parametrize("sub_v", VERSIONS)
@pytest.mark.parametrize("pub_v", VERSIONS)
def test_mosquitto_sub_receives_what_mosquitto_pub_sends(broker, subs, uid, pub_v, sub_v):
    topic = f"it/{uid}/cli"
    s = subs(broker, sub_v, f"{uid}-s", topic, "-q", "1", "-C", "1", "-d")
    s.wait_for(lambda line: "SUBACK" in line)  # subscribed: publishing now cannot race it
    pub(broker, pub_v, f"{uid}-p", topic, f"hello from {pub_v}", "-q", "1")
    assert s.message() == (False, 1, topic, f"hello from {pub_v}")
    assert s.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_message_from_mosquitto_pub(broker, subs, uid, version):
    topic = f"it/{uid}/cli-retained"
    pub(broker, "mqttv5", f"{uid}-p", topic, "kept", "-q", "1", "-r")
    try:
        s = subs(broker, version, f"{uid}-s", topic, "-q", "1", "-C", "1")
        assert s.message() == (True, 1, topic, "kept")
        assert s.finish() == 0
    finally:
        pub(broker, "mqttv311", f"{uid}-d", topic, None, "-q", "1", "-r")


def test_mosquitto_pub_null_retained_message_deletes(broker, subs, uid):
    topic = f"it/{uid}/cli-deleted"
    pub(broker, "mqttv311", f"{uid}-p", topic, "soon gone", "-q", "1", "-r")
    pub(broker, "mqttv5", f"{uid}-d", topic, None, "-q", "1", "-r")
    s = subs(broker, "mqttv311", f"{uid}-s", topic, "-q", "1", "-C", "1", "-W", "1")
    code = s.finish()
    assert [line for line in s.all if line.startswith("MSG|")] == []
    assert code != 0  # mosquitto_sub exits non-zero when -W expires before -C is reached


def test_mosquitto_pub_v5_properties_reach_paho(broker, connected, uid):
    topic = f"it/{uid}/cli-props"
    sub = connected("paho", mqtt.MQTTv5)
    sub.subscribe(topic, 1)
    pub(
        broker, "mqttv5", f"{uid}-p", topic, '{"x": 1}', "-q", "1",
        "-D", "publish", "user-property", "origin", "cli",
        "-D", "publish", "content-type", "application/json",
        "-D", "publish", "response-topic", f"it/{uid}/back",
    )
    msg = sub.expect_message()
    assert msg.payload == b'{"x": 1}'
    assert msg.properties.UserProperty == [("origin", "cli")]
    assert msg.properties.ContentType == "application/json"
    assert msg.properties.ResponseTopic == f"it/{uid}/back"


def test_paho_publish_reaches_mosquitto_sub_at_qos2(broker, subs, connected, uid):
    topic = f"it/{uid}/cli-q2"
    s = subs(broker, "mqttv5", f"{uid}-s", topic, "-q", "2", "-C", "1", "-d")
    s.wait_for(lambda line: "SUBACK" in line)
    p = connected("paho", mqtt.MQTTv311)
    p.publish(topic, b"exactly once", 2)
    assert s.message() == (False, 2, topic, "exactly once")
    assert s.finish() == 0
