"""A Paho client wrapped for tests: every step waits on an event with a deadline.

`Peer` runs Paho's network thread (`loop_start`) and records what the callbacks see: the CONNACK,
SUBACK/UNSUBACK/PUBACK results keyed by packet id, received messages in a queue and the
disconnect. Automatic reconnection is off, so a connection that the broker closes stays closed
and the test sees it.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Default deadline for anything that should happen promptly on a loopback broker.
TIMEOUT = 5.0
# How long a test waits to be confident that something does NOT happen.
QUIET = 0.6

PROTOCOLS = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}


def props(packet_type: int, **values) -> Properties:
    """Builds Paho properties: props(PacketTypes.PUBLISH, MessageExpiryInterval=5)."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def reason_value(rc) -> int:
    """A Paho ReasonCode (or int) as its numeric value."""
    return rc if isinstance(rc, int) else rc.value


@dataclass
class ConnAck:
    session_present: bool
    reason: int
    properties: Properties | None


class Peer:
    """A connected (or connectable) Paho client recording what it sees."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        protocol: int = mqtt.MQTTv311,
        clean: bool = True,
        keepalive: int = 30,
        manual_ack: bool = False,
    ):
        self.host, self.port = host, port
        self.protocol = protocol
        self.clean = clean
        self.keepalive = keepalive
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if protocol == mqtt.MQTTv5 else clean,
            protocol=protocol,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: ConnAck | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_reason: int | None = None
        self.disconnect_from_server = False
        self._cond = threading.Condition()
        self._acks: dict[tuple[str, int], object] = {}
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        c.on_subscribe = lambda _c, _u, mid, codes, _p: self._ack("sub", mid, [reason_value(r) for r in codes])
        c.on_unsubscribe = lambda _c, _u, mid, codes, _p: self._ack("unsub", mid, [reason_value(r) for r in codes])
        c.on_publish = lambda _c, _u, mid, rc, _p: self._ack("pub", mid, reason_value(rc))
        self._loop = False

    # -- callbacks -----------------------------------------------------------------------------

    def _on_connect(self, _c, _u, flags, reason, properties):
        self.connack = ConnAck(bool(flags.session_present), reason_value(reason), properties)
        self.connected.set()

    def _on_disconnect(self, _c, _u, flags, reason, _p):
        self.disconnect_reason = reason_value(reason)
        self.disconnect_from_server = flags.is_disconnect_packet_from_server
        self.disconnected.set()

    def _ack(self, kind: str, mid: int, value) -> None:
        with self._cond:
            self._acks[(kind, mid)] = value
            self._cond.notify_all()

    def _wait_ack(self, kind: str, mid: int, timeout: float):
        deadline = time.monotonic() + timeout
        with self._cond:
            while (kind, mid) not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} acknowledgement for packet {mid} within {timeout}s")
                self._cond.wait(left)
            return self._acks.pop((kind, mid))

    # -- actions -------------------------------------------------------------------------------

    def will_set(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties=None):
        self.client.will_set(topic, payload, qos, retain, properties)

    def connect(
        self,
        session_expiry: int | None = None,
        properties: Properties | None = None,
        expect_success: bool = True,
        timeout: float = TIMEOUT,
    ) -> ConnAck:
        """Connects and waits for the CONNACK. For 5.0, `clean` is Clean Start."""
        kwargs = {}
        if self.protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = self.clean
            if session_expiry is not None:
                properties = properties or Properties(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = session_expiry
            kwargs["properties"] = properties
        self.connected.clear()
        self.disconnected.clear()
        self.client.connect(self.host, self.port, keepalive=self.keepalive, **kwargs)
        if not self._loop:
            self.client.loop_start()
            self._loop = True
        if not self.connected.wait(timeout):
            raise AssertionError(f"no CONNACK within {timeout}s")
        assert self.connack is not None
        if expect_success:
            assert self.connack.reason == 0, f"connection refused: {self.connack.reason:#x}"
        return self.connack

    def subscribe(self, topic, qos: int = 0, options=None, properties=None, timeout: float = TIMEOUT) -> list[int]:
        """Subscribes and returns the SUBACK's codes (granted QoS or 5.0 reason codes)."""
        if options is not None:
            rc, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            rc, mid = self.client.subscribe(topic, qos, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {rc}"
        return self._wait_ack("sub", mid, timeout)

    def unsubscribe(self, topic, timeout: float = TIMEOUT) -> list[int]:
        rc, mid = self.client.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe not sent: {rc}"
        return self._wait_ack("unsub", mid, timeout)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties=None,
        wait: bool = True,
        timeout: float = TIMEOUT,
    ) -> int | None:
        """Publishes; with `wait`, waits for the QoS 1/2 handshake to finish (or QoS 0 to be
        written) and returns the reason code the broker gave (5.0) or 0."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish not sent: {info.rc}"
        if not wait:
            return None
        return self._wait_ack("pub", info.mid, timeout)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledges a received message (with manual_ack=True)."""
        self.client.ack(mid, qos)

    def disconnect(self, reasoncode=None, properties=None, timeout: float = TIMEOUT) -> None:
        """A clean DISCONNECT; waits until the socket is closed."""
        self.client.disconnect(reasoncode=reasoncode, properties=properties)
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"disconnect did not complete within {timeout}s")
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop:
            self.client.loop_stop()
            self._loop = False

    def close(self) -> None:
        """Best-effort teardown for fixtures."""
        try:
            if self.client.is_connected():
                self.client.disconnect()
                self.disconnected.wait(1.0)
        finally:
            self._stop_loop()

    # -- expectations --------------------------------------------------------------------------

    def expect_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def expect_messages(self, count: int, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            left = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(0.0, left)))
            except queue.Empty:
                raise AssertionError(
                    f"got {len(out)} of {count} messages within {timeout}s: "
                    f"{[(m.topic, m.payload) for m in out]}"
                ) from None
        return out

    def expect_no_message(self, wait: float = QUIET) -> None:
        try:
            msg = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {msg.topic!r}: {msg.payload!r}")

    def drain(self, wait: float = 0.0) -> list[mqtt.MQTTMessage]:
        """Everything received so far (after waiting `wait` seconds)."""
        if wait:
            time.sleep(wait)
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out
