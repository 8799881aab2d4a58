"""A tiny hand-written MQTT client over a raw TCP socket.

Paho is a well-behaved client: it cannot send garbage, announce an oversized packet, publish
before CONNECT, go silent while claiming a keep alive, or read PUBLISH packets without acking them.
These helpers build the bytes by hand (MQTT 3.1, 3.1.1 and 5.0) and read packets back with
deadlines, so such cases can be tested. Only what the tests need is implemented.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Protocol levels as they appear on the wire.
V31 = 3
V311 = 4
V5 = 5

# Control packet types (the high nibble of the first byte).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

# MQTT 5.0 property identifiers and how their values are encoded.
PROP_TYPES = {
    0x01: "byte",  # Payload Format Indicator
    0x02: "u32",  # Message Expiry Interval
    0x03: "str",  # Content Type
    0x08: "str",  # Response Topic
    0x09: "bin",  # Correlation Data
    0x0B: "varint",  # Subscription Identifier
    0x11: "u32",  # Session Expiry Interval
    0x12: "str",  # Assigned Client Identifier
    0x13: "u16",  # Server Keep Alive
    0x15: "str",  # Authentication Method
    0x16: "bin",  # Authentication Data
    0x17: "byte",  # Request Problem Information
    0x18: "u32",  # Will Delay Interval
    0x19: "byte",  # Request Response Information
    0x1A: "str",  # Response Information
    0x1C: "str",  # Server Reference
    0x1F: "str",  # Reason String
    0x21: "u16",  # Receive Maximum
    0x22: "u16",  # Topic Alias Maximum
    0x23: "u16",  # Topic Alias
    0x24: "byte",  # Maximum QoS
    0x25: "byte",  # Retain Available
    0x26: "pair",  # User Property
    0x27: "u32",  # Maximum Packet Size
    0x28: "byte",  # Wildcard Subscription Available
    0x29: "byte",  # Subscription Identifier Available
    0x2A: "byte",  # Shared Subscription Available
}
SESSION_EXPIRY = 0x11
ASSIGNED_CLIENT_ID = 0x12
RECEIVE_MAXIMUM = 0x21
WILL_DELAY = 0x18
MAXIMUM_PACKET_SIZE = 0x27
REASON_STRING = 0x1F


class Closed(Exception):
    """The broker closed the connection."""


def varint(n: int) -> bytes:
    """Encodes a Variable Byte Integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str | bytes) -> bytes:
    """A two-byte length followed by the bytes."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def properties(props: list[tuple[int, object]] | None) -> bytes:
    """Encodes a property list (identifier, value) with its length prefix."""
    body = bytearray()
    for ident, value in props or []:
        kind = PROP_TYPES[ident]
        body += varint(ident)
        if kind == "byte":
            body += struct.pack("!B", value)
        elif kind == "u16":
            body += struct.pack("!H", value)
        elif kind == "u32":
            body += struct.pack("!I", value)
        elif kind == "varint":
            body += varint(value)
        elif kind in ("str", "bin"):
            body += utf8(value)
        elif kind == "pair":
            body += utf8(value[0]) + utf8(value[1])
    return varint(len(body)) + bytes(body)


def packet(first_byte: int, body: bytes) -> bytes:
    """A complete packet: fixed header byte, remaining length, body."""
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    version: int = V311,
    clean: bool = True,
    keepalive: int = 60,
    will: tuple[str, bytes, int, bool] | None = None,
    will_props: list | None = None,
    props: list | None = None,
) -> bytes:
    """CONNECT. `will` is (topic, payload, qos, retain)."""
    name = b"MQIsdp" if version == V31 else b"MQTT"
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    body = utf8(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += properties(props)
    body += utf8(client_id)
    if will:
        if version == V5:
            body += properties(will_props)
        body += utf8(will[0]) + utf8(will[1])
    return packet(CONNECT << 4, body)


def publish_packet(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 1,
    retain: bool = False,
    version: int = V311,
    props: list | None = None,
) -> bytes:
    body = utf8(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == V5:
        body += properties(props)
    body += payload
    return packet((PUBLISH << 4) | (qos << 1) | int(retain), body)


def subscribe_packet(
    filters: list[tuple[str, int]], packet_id: int = 1, version: int = V311, props: list | None = None
) -> bytes:
    """SUBSCRIBE; each filter is (filter, options byte: QoS plus 5.0 option bits)."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += properties(props)
    for topic_filter, options in filters:
        body += utf8(topic_filter) + bytes([options])
    return packet((SUBSCRIBE << 4) | 0x02, body)


def puback_packet(packet_id: int) -> bytes:
    return packet(PUBACK << 4, struct.pack("!H", packet_id))


def disconnect_packet(version: int = V311, reason: int = 0) -> bytes:
    if version == V5 and reason:
        return packet(DISCONNECT << 4, bytes([reason, 0]))
    return packet(DISCONNECT << 4, b"")


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])


@dataclass
class Packet:
    """A packet read back, with the fields the tests look at decoded."""

    type: int
    flags: int
    body: bytes
    version: int
    props: dict = field(default_factory=dict)
    # CONNACK / PUBACK / DISCONNECT: the return or reason code; SUBACK: first code.
    reason: int | None = None
    codes: list[int] = field(default_factory=list)  # SUBACK
    session_present: bool = False  # CONNACK
    topic: str = ""  # PUBLISH
    payload: bytes = b""  # PUBLISH
    packet_id: int | None = None
    qos: int = 0
    retain: bool = False

    def __repr__(self) -> str:
        return (
            f"Packet(type={self.type}, flags={self.flags:#x}, reason={self.reason}, "
            f"props={self.props}, codes={self.codes}, topic={self.topic!r}, "
            f"payload={self.payload[:40]!r})"
        )


def parse_properties(data: bytes, pos: int) -> tuple[dict, int]:
    """Decodes a property list at `pos`; returns (identifier -> value or list, next position)."""
    length, pos = read_varint(data, pos)
    end = pos + length
    props: dict = {}
    while pos < end:
        ident, pos = read_varint(data, pos)
        kind = PROP_TYPES[ident]
        if kind == "byte":
            value, pos = data[pos], pos + 1
        elif kind == "u16":
            value, pos = struct.unpack_from("!H", data, pos)[0], pos + 2
        elif kind == "u32":
            value, pos = struct.unpack_from("!I", data, pos)[0], pos + 4
        elif kind == "varint":
            value, pos = read_varint(data, pos)
        elif kind in ("str", "bin"):
            (n,) = struct.unpack_from("!H", data, pos)
            value, pos = data[pos + 2 : pos + 2 + n], pos + 2 + n
            if kind == "str":
                value = value.decode()
        else:
            (n,) = struct.unpack_from("!H", data, pos)
            key = data[pos + 2 : pos + 2 + n].decode()
            pos += 2 + n
            (n,) = struct.unpack_from("!H", data, pos)
            value = (key, data[pos + 2 : pos + 2 + n].decode())
            pos += 2 + n
        if ident in (0x26, 0x0B):  # may repeat
            props.setdefault(ident, []).append(value)
        else:
            props[ident] = value
    return props, end


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode(first: int, body: bytes, version: int) -> Packet:
    p = Packet(type=first >> 4, flags=first & 0x0F, body=body, version=version)
    v5 = version == V5
    if p.type == CONNACK:
        p.session_present = bool(body[0] & 1)
        p.reason = body[1]
        if v5 and len(body) > 2:
            p.props, _ = parse_properties(body, 2)
    elif p.type == PUBLISH:
        p.qos = (p.flags >> 1) & 3
        p.retain = bool(p.flags & 1)
        (n,) = struct.unpack_from("!H", body, 0)
        p.topic = body[2 : 2 + n].decode()
        pos = 2 + n
        if p.qos:
            (p.packet_id,) = struct.unpack_from("!H", body, pos)
            pos += 2
        if v5:
            p.props, pos = parse_properties(body, pos)
        p.payload = body[pos:]
    elif p.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        (p.packet_id,) = struct.unpack_from("!H", body, 0)
        p.reason = body[2] if len(body) > 2 else 0
    elif p.type in (SUBACK, UNSUBACK):
        (p.packet_id,) = struct.unpack_from("!H", body, 0)
        pos = 2
        if v5:
            p.props, pos = parse_properties(body, pos)
        p.codes = list(body[pos:])
        p.reason = p.codes[0] if p.codes else None
    elif p.type == DISCONNECT:
        p.reason = body[0] if body else 0
        if v5 and len(body) > 1:
            p.props, _ = parse_properties(body, 1)
    return p


class RawClient:
    """One TCP connection speaking hand-built MQTT. Every read has a deadline."""

    def __init__(self, host: str, port: int, version: int = V311, timeout: float = 5.0):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False

    # -- sending -------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str, **kwargs) -> Packet:
        """Sends CONNECT and returns the CONNACK (whatever its code)."""
        self.send(connect_packet(client_id, version=self.version, **kwargs))
        ack = self.recv()
        assert ack.type == CONNACK, f"expected CONNACK, got {ack}"
        return ack

    def subscribe(self, topic_filter: str, options: int = 0, packet_id: int = 1, props=None) -> Packet:
        self.send(subscribe_packet([(topic_filter, options)], packet_id, self.version, props))
        return self.recv_type(SUBACK)

    def publish(self, topic, payload: bytes, qos: int = 0, packet_id: int = 1, retain=False, props=None):
        self.send(publish_packet(topic, payload, qos, packet_id, retain, self.version, props))

    def disconnect(self, reason: int = 0) -> None:
        self.send(disconnect_packet(self.version, reason))
        self.close()

    def close(self) -> None:
        """Closes the socket abruptly: no DISCONNECT is sent."""
        if not self.closed:
            self.closed = True
            self.sock.close()

    # -- receiving -----------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet from the broker in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no packet from the broker in time") from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            raise Closed()
        self.buf += chunk

    def recv(self, timeout: float | None = None) -> Packet:
        """The next packet. Raises TimeoutError after `timeout`, Closed on end of stream."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                length, pos, complete = 0, 1, False
                for shift in range(4):
                    if pos >= len(self.buf):
                        break
                    byte = self.buf[pos]
                    pos += 1
                    length |= (byte & 0x7F) << (7 * shift)
                    if not byte & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= pos + length:
                    first = self.buf[0]
                    body = bytes(self.buf[pos : pos + length])
                    del self.buf[: pos + length]
                    return decode(first, body, self.version)
            self._fill(deadline)

    def recv_type(self, kind: int, timeout: float | None = None) -> Packet:
        """The next packet of one type, skipping others (e.g. a retained PUBLISH before SUBACK)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            p = self.recv(max(0.0, deadline - time.monotonic()))
            if p.type == kind:
                return p

    def expect_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Waits until the broker closes the connection; returns the packets it sent first.

        Fails the test if the connection is still open after `timeout`.
        """
        deadline = time.monotonic() + timeout
        seen: list[Packet] = []
        while True:
            try:
                seen.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return seen
            except TimeoutError:
                raise AssertionError(
                    f"broker did not close the connection within {timeout}s (saw {seen})"
                ) from None

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
