"""CONNECT/CONNACK, keep alive, client identifiers and takeover."""

from __future__ import annotations

import paho.mqtt.client as mqtt

import mqttraw
from peers import QUIET, TIMEOUT


def test_connect_is_accepted_without_session(connected, proto):
    c = connected("c", proto)
    assert c.connack.reason == 0
    assert c.connack.session_present is False


def test_v5_connack_limits_are_sane(connected):
    """What a 5.0 client is told in CONNACK must allow the rest of this suite to work."""
    props = connected("c", mqtt.MQTTv5).connack.properties
    if hasattr(props, "MaximumPacketSize"):
        assert props.MaximumPacketSize >= 64 * 1024
    if hasattr(props, "ReceiveMaximum"):
        assert props.ReceiveMaximum >= 1
    # Absent means available; the suite uses all of them.
    for name in (
        "RetainAvailable",
        "WildcardSubscriptionAvailable",
        "SharedSubscriptionAvailable",
        "SubscriptionIdentifierAvailable",
    ):
        assert getattr(props, name, 1) == 1, name
    assert getattr(props, "MaximumQoS", 2) == 2


def test_pingreq_gets_pingresp(raw, raw_version, uid):
    c = raw(raw_version)
    assert c.connect(f"{uid}-p").reason == 0
    for _ in range(3):
        c.send(mqttraw.PINGREQ_PACKET)
        resp = c.recv()
        assert resp.type == mqttraw.PINGRESP and resp.body == b""


def test_keepalive_pings_keep_an_idle_client_connected(connected, proto, uid):
    """A client with keep alive 1 s that only pings stays connected past the 3 s by which a
    silent one must have been closed."""
    c = connected("idle", proto, keepalive=1)
    topic = f"it/{uid}/idle"
    c.subscribe(topic, 1)
    assert not c.disconnected.wait(3.1), f"idle pinging client was disconnected ({c.disconnect_reason})"
    c.publish(topic, b"still here", 1)
    assert c.expect_message().payload == b"still here"


def test_mqtt31_client_is_accepted_and_interoperates(broker, peer, uid):
    """Protocol name MQIsdp, level 3: an old client still talks to 3.1.1 and 5.0 clients."""
    topic = f"it/{uid}/v31"
    old = peer("old", mqtt.MQTTv31)
    assert old.connect().reason == 0
    new = peer("new", mqtt.MQTTv5)
    new.connect()
    assert old.subscribe(topic + "/down", 1) == [1]
    new.subscribe(topic + "/up", 2)
    old.publish(topic + "/up", b"from 3.1", 2)
    msg = new.expect_message()
    assert (msg.topic, msg.payload, msg.qos) == (topic + "/up", b"from 3.1", 2)
    new.publish(topic + "/down", b"from 5.0", 1)
    msg = old.expect_message()
    assert (msg.topic, msg.payload, msg.qos) == (topic + "/down", b"from 5.0", 1)


def test_mqtt31_raw_connect_is_accepted(raw, uid):
    c = raw(mqttraw.V31)
    ack = c.connect(f"{uid}-31")
    assert ack.reason == 0 and ack.body == b"\x00\x00"


def test_v311_empty_client_id_with_clean_session_is_accepted(broker, peer, uid):
    c = peer("ignored", mqtt.MQTTv311, client_id="")
    assert c.connect().reason == 0
    topic = f"it/{uid}/anon"
    c.subscribe(topic, 1)
    c.publish(topic, b"anon", 1)
    assert c.expect_message().payload == b"anon"


def test_v311_empty_client_id_without_clean_session_is_refused(raw):
    """MQTT-3.1.3-8: CONNACK return code 0x02 (identifier rejected), then the connection closes."""
    c = raw(mqttraw.V311)
    ack = c.connect("", clean=False)
    assert ack.reason == 0x02
    assert ack.session_present is False
    c.expect_closed()


def test_v5_empty_client_id_gets_an_assigned_identifier(connected):
    a = connected("", mqtt.MQTTv5, client_id="")
    b = connected("", mqtt.MQTTv5, client_id="")
    ida = getattr(a.connack.properties, "AssignedClientIdentifier", None)
    idb = getattr(b.connack.properties, "AssignedClientIdentifier", None)
    assert ida and idb, "5.0 CONNACK must carry an Assigned Client Identifier"
    assert ida != idb


def test_second_connection_with_same_id_takes_over(raw, peer, raw_version, uid):
    """The first connection is closed (5.0: DISCONNECT 0x8E Session taken over, if sent)."""
    cid = f"{uid}-dup"
    first = raw(raw_version)
    assert first.connect(cid).reason == 0
    protocol = mqtt.MQTTv5 if raw_version == mqttraw.V5 else mqtt.MQTTv311
    second = peer("x", protocol, client_id=cid)
    second.connect()
    seen = first.expect_closed()
    assert all(p.type == mqttraw.DISCONNECT for p in seen), seen
    if raw_version == mqttraw.V5 and seen:
        assert seen[0].reason == 0x8E, f"takeover reason {seen[0].reason:#x}"
    # The new connection is the one that works.
    topic = f"it/{uid}/takeover"
    second.subscribe(topic, 1)
    second.publish(topic, b"mine", 1)
    assert second.expect_message().payload == b"mine"
    assert not second.disconnected.is_set()


def test_takeover_is_seen_by_a_paho_client(peer, proto, uid):
    cid = f"{uid}-dup"
    first = peer("a", proto, client_id=cid)
    first.connect()
    second = peer("b", proto, client_id=cid)
    second.connect()
    assert first.disconnected.wait(TIMEOUT), "first connection was not closed on takeover"
    if proto == mqtt.MQTTv5 and first.disconnect_from_server:
        assert first.disconnect_reason == 0x8E
    assert not second.disconnected.wait(QUIET), "the new connection was closed too"
