"""Retained messages."""

from __future__ import annotations

import pytest


@pytest.fixture
def retained(connected, proto):
    """A publisher of retained messages that deletes what it retained after the test."""
    pub = connected("ret", proto)
    topics: list[str] = []

    def put(topic: str, payload: bytes, qos: int = 1) -> None:
        pub.publish(topic, payload, qos, retain=True)
        topics.append(topic)

    put.client = pub
    yield put
    for t in topics:
        pub.publish(t, b"", 1, retain=True)


def test_retained_message_is_delivered_on_subscribe(connected, retained, proto, uid):
    topic = f"it/{uid}/status/v1"
    retained(topic, b"online", qos=1)
    exact = connected("exact", proto)
    exact.subscribe(topic, 1)
    msg = exact.expect_message()
    assert (msg.topic, msg.payload, msg.retain, msg.qos) == (topic, b"online", True, 1)
    exact.expect_no_message(0.3)


def test_retained_message_is_delivered_through_wildcards(connected, retained, proto, uid):
    topics = {f"it/{uid}/status/v{i}": f"state {i}".encode() for i in range(3)}
    for t, p in topics.items():
        retained(t, p)
    for name, filt in (("plus", f"it/{uid}/status/+"), ("hash", f"it/{uid}/#")):
        c = connected(name, proto)
        c.subscribe(filt, 1)
        got = c.expect_messages(len(topics))
        assert {m.topic: m.payload for m in got} == topics
        assert all(m.retain for m in got)
        c.expect_no_message(0.3)


def test_retained_qos_is_downgraded_to_the_subscription(connected, retained, proto, uid):
    topic = f"it/{uid}/r"
    retained(topic, b"q2", qos=2)
    c = connected("c", proto)
    c.subscribe(topic, 0)
    msg = c.expect_message()
    assert (msg.payload, msg.qos, msg.retain) == (b"q2", 0, True)


def test_live_messages_to_existing_subscribers_are_not_flagged_retained(connected, retained, proto, uid):
    """MQTT-3.3.1-9 (3.1.1) / Retain As Published = 0 (5.0): the flag is cleared."""
    topic = f"it/{uid}/live"
    sub = connected("sub", proto)
    sub.subscribe(topic, 1)
    retained(topic, b"now")
    msg = sub.expect_message()
    assert (msg.payload, msg.retain) == (b"now", False)


def test_newer_retained_message_replaces_older(connected, retained, proto, uid):
    topic = f"it/{uid}/r"
    retained(topic, b"old")
    retained(topic, b"new")
    c = connected("c", proto)
    c.subscribe(topic, 1)
    assert c.expect_message().payload == b"new"
    c.expect_no_message(0.3)


def test_empty_retained_payload_deletes_the_retained_message(connected, retained, proto, uid):
    gone, kept = f"it/{uid}/gone", f"it/{uid}/kept"
    retained(gone, b"soon deleted")
    retained(kept, b"sentinel")
    retained(gone, b"")
    c = connected("c", proto)
    c.subscribe(f"it/{uid}/+", 1)
    msg = c.expect_message()
    assert (msg.topic, msg.payload) == (kept, b"sentinel")
    c.expect_no_message(0.4)
