"""Protocol errors close only the offending connection.

Each case opens a raw socket that misbehaves. The broker must close it (a 5.0 connection may first
get a DISCONNECT, or a CONNACK, whose reason code is then checked), while a well-behaved client
connected beforehand stays connected and keeps receiving messages.
"""

from __future__ import annotations

import struct

import paho.mqtt.client as mqtt
import pytest

import mqttraw

MAX_PACKET_SIZE = 8 * 1024 * 1024  # fleetmq's default limits.max_packet_size


@pytest.fixture
def bystander(connected, raw_version, uid):
    """A well-behaved client of the same protocol version, and a check that it is unharmed."""
    protocol = mqtt.MQTTv5 if raw_version == mqttraw.V5 else mqtt.MQTTv311
    topic = f"it/{uid}/bystander"
    good = connected("good", protocol)
    good.subscribe(topic, 1)
    sender = connected("sender", protocol)

    def check_unharmed():
        assert not good.disconnected.is_set(), "the well-behaved client was disconnected"
        sender.publish(topic, b"still fine", 1)
        msg = good.expect_message()
        assert msg.payload == b"still fine"
        assert not good.disconnected.is_set()

    return check_unharmed


def _closed_with(conn: mqttraw.RawClient, allowed: set[int], kinds=(mqttraw.DISCONNECT,)) -> None:
    """The connection is closed, after at most one DISCONNECT (or CONNACK) with an allowed code."""
    seen = conn.expect_closed(timeout=5.0)
    assert len(seen) <= 1, f"expected at most one packet before close, got {seen}"
    for p in seen:
        assert p.type in kinds, f"unexpected packet before close: {p}"
        if conn.version == mqttraw.V5:
            assert p.reason in allowed, f"reason {p.reason:#x}, expected one of {sorted(map(hex, allowed))}"


def _send_quietly(conn: mqttraw.RawClient, data: bytes) -> None:
    """Sends, tolerating a broker that already closed the socket."""
    try:
        conn.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_garbage_instead_of_connect(raw, raw_version, bystander):
    bad = raw(raw_version)
    _send_quietly(bad, b"GET / HTTP/1.1\r\nHost: fleetmq\r\n\r\n")
    # No CONNECT, so no protocol version is known: a plain close is expected.
    seen = bad.expect_closed()
    assert all(p.type in (mqttraw.CONNACK, mqttraw.DISCONNECT) for p in seen), seen
    bystander()


def test_garbage_after_connect(raw, raw_version, uid, bystander):
    bad = raw(raw_version)
    assert bad.connect(f"{uid}-bad").reason == 0
    # Packet type 0 is reserved: a malformed packet / protocol error.
    _send_quietly(bad, b"\x00\x02\xff\xff" + bytes(range(32)))
    _closed_with(bad, {0x81, 0x82})
    bystander()


def test_connect_with_bad_protocol_name(raw, raw_version, bystander, uid):
    bad = raw(raw_version)
    body = mqttraw.utf8(b"MQTX") + bytes([raw_version, 0x02]) + struct.pack("!H", 60)
    if raw_version == mqttraw.V5:
        body += b"\x00"
    body += mqttraw.utf8(f"{uid}-bad")
    _send_quietly(bad, mqttraw.packet(0x10, body))
    # 3.1.1: close without CONNACK (MQTT-3.1.2-1); 5.0 may send CONNACK 0x84 or 0x81/0x82 first.
    seen = bad.expect_closed()
    for p in seen:
        assert p.type == mqttraw.CONNACK and p.reason != 0, seen
    bystander()


def test_oversized_packet(raw, raw_version, uid, bystander):
    """A PUBLISH announcing more than the 8 MiB maximum packet size is refused from its header:
    the broker must not wait for (or buffer) the announced bytes. 5.0: DISCONNECT 0x95."""
    bad = raw(raw_version)
    ack = bad.connect(f"{uid}-big")
    assert ack.reason == 0
    if raw_version == mqttraw.V5:
        assert ack.props.get(mqttraw.MAXIMUM_PACKET_SIZE) == MAX_PACKET_SIZE, ack.props
    announced = 2 * MAX_PACKET_SIZE
    header = bytes([0x30]) + mqttraw.varint(announced)
    _send_quietly(bad, header + mqttraw.utf8(f"it/{uid}/big") + b"x" * 1000)
    _closed_with(bad, {0x95})
    bystander()


def test_packet_just_under_the_limit_is_accepted(connected, proto, uid):
    """The counterpart of the oversized case: a payload 1 KiB under the limit goes through."""
    topic = f"it/{uid}/large"
    sub = connected("sub", proto)
    sub.subscribe(topic, 1)
    pub = connected("pub", proto)
    payload = bytes(range(256)) * ((MAX_PACKET_SIZE - 1024) // 256)
    pub.publish(topic, payload, 1)
    msg = sub.expect_message()
    assert msg.payload == payload


def test_publish_before_connect(raw, raw_version, uid, bystander):
    bad = raw(raw_version)
    _send_quietly(bad, mqttraw.publish_packet(f"it/{uid}/bystander", b"sneaky", 0))
    seen = bad.expect_closed()
    assert seen == [], f"no packet may be sent before CONNECT: {seen}"
    bystander()  # and the sneaky message must not have been delivered (checked by order there)


def test_publish_with_wildcard_topic(raw, raw_version, uid, bystander):
    bad = raw(raw_version)
    assert bad.connect(f"{uid}-wild").reason == 0
    _send_quietly(bad, mqttraw.publish_packet(f"it/{uid}/+", b"x", 1, version=raw_version))
    # 0x90 Topic Name invalid is the precise code; mosquitto sends 0x82 Protocol Error.
    _closed_with(bad, {0x81, 0x82, 0x90})
    bystander()


def test_second_connect_is_a_protocol_error(raw, raw_version, uid, bystander):
    bad = raw(raw_version)
    assert bad.connect(f"{uid}-twice").reason == 0
    _send_quietly(bad, mqttraw.connect_packet(f"{uid}-twice", version=raw_version))
    _closed_with(bad, {0x82})
    bystander()


def test_many_bad_connections_do_not_disturb_a_good_one(raw, raw_version, bystander):
    for i in range(20):
        bad = raw(raw_version, timeout=2.0)
        _send_quietly(bad, bytes([(i % 16) << 4, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))
        bad.expect_closed(timeout=3.0)
    bystander()

