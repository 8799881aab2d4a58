"""Publish/subscribe at every QoS, wildcards, `$` topics and unsubscribe."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from peers import QUIET


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_qos_is_granted_and_downgraded_both_ways(connected, proto, uid, pub_qos, sub_qos):
    """Each of two clients subscribes at `sub_qos` and publishes to the other at `pub_qos`:
    the message arrives at min(pub_qos, sub_qos), and the publisher's handshake completes."""
    a = connected("a", proto)
    b = connected("b", proto)
    to_a, to_b = f"it/{uid}/to-a", f"it/{uid}/to-b"
    assert a.subscribe(to_a, sub_qos) == [sub_qos]
    assert b.subscribe(to_b, sub_qos) == [sub_qos]
    for sender, receiver, topic in ((a, b, to_b), (b, a, to_a)):
        payload = f"{sender.client._client_id.decode()} q{pub_qos}".encode()
        rc = sender.publish(topic, payload, pub_qos)
        assert rc in (0, None), f"publish answered {rc:#x}"
        msg = receiver.expect_message()
        assert (msg.topic, msg.payload) == (topic, payload)
        assert msg.qos == min(pub_qos, sub_qos)
        assert msg.retain is False
        assert msg.dup is False


def test_versions_interoperate(connected, uid):
    """A 3.1.1 publisher reaches a 5.0 subscriber and the other way round."""
    old = connected("old", mqtt.MQTTv311)
    new = connected("new", mqtt.MQTTv5)
    old.subscribe(f"it/{uid}/old", 2)
    new.subscribe(f"it/{uid}/new", 2)
    old.publish(f"it/{uid}/new", b"to five", 2)
    new.publish(f"it/{uid}/old", b"to three", 2)
    assert new.expect_message().payload == b"to five"
    assert old.expect_message().payload == b"to three"


def test_wildcards(connected, proto, uid):
    base = f"it/{uid}"
    plus = connected("plus", proto)
    hash_ = connected("hash", proto)
    mixed = connected("mixed", proto)
    plus.subscribe(f"{base}/+/temp", 1)
    hash_.subscribe(f"{base}/#", 1)
    mixed.subscribe(f"{base}/+/x/#", 1)
    pub = connected("pub", proto)
    topics = [
        base,  # `#` also matches the parent level
        f"{base}/v1/temp",
        f"{base}/v2/temp",
        f"{base}/v1/temp/extra",
        f"{base}/v1/hum",
        f"{base}//temp",  # an empty level matches `+`
        f"{base}/v1/x",
        f"{base}/v1/x/y/z",
    ]
    for t in topics:
        pub.publish(t, t.encode(), 1)
    expect_plus = {f"{base}/v1/temp", f"{base}/v2/temp", f"{base}//temp"}
    expect_hash = set(topics)
    expect_mixed = {f"{base}/v1/x", f"{base}/v1/x/y/z"}
    for client, expected in ((plus, expect_plus), (hash_, expect_hash), (mixed, expect_mixed)):
        got = client.expect_messages(len(expected))
        assert {m.topic for m in got} == expected
        assert all(m.payload == m.topic.encode() for m in got)
    for client in (plus, hash_, mixed):
        client.expect_no_message(0.3)


def test_dollar_topics_are_not_matched_by_leading_wildcards(connected, proto, uid):
    """MQTT-4.7.2-1: `#` and `+/...` do not match topics starting with `$`; `$x/#` does."""
    everything = connected("all", proto)
    everything.subscribe("#", 0)
    plus = connected("plus", proto)
    plus.subscribe(f"+/{uid}", 0)
    explicit = connected("explicit", proto)
    explicit.subscribe(f"$it{uid}/#", 0)
    pub = connected("pub", proto)
    pub.publish(f"$it{uid}/{uid}", b"dollar", 1)
    pub.publish(f"it{uid}/{uid}", b"sentinel", 1)
    assert explicit.expect_message().payload == b"dollar"
    # The sentinel arrives after the `$` message would have (same publisher, QoS 1, in order).
    for client in (everything, plus):
        mine = []
        while True:
            msg = client.expect_message()
            if msg.topic.endswith(uid):  # ignore other traffic seen by `#`
                mine.append(msg)
            if msg.payload == b"sentinel":
                break
        assert [m.payload for m in mine] == [b"sentinel"]
    # `#` sees no $SYS or other `$` topics at all.
    leaked = [m.topic for m in everything.drain(0.3) if m.topic.startswith("$")]
    assert leaked == []
    explicit.expect_no_message(0.2)


def test_unsubscribe_stops_delivery(connected, proto, uid):
    topic, other = f"it/{uid}/gone", f"it/{uid}/kept"
    sub = connected("sub", proto)
    sub.subscribe(topic, 1)
    sub.subscribe(other, 1)
    pub = connected("pub", proto)
    pub.publish(topic, b"before", 1)
    assert sub.expect_message().payload == b"before"
    codes = sub.unsubscribe(topic)
    if proto == mqtt.MQTTv5:
        assert codes == [0]
    pub.publish(topic, b"after", 1)
    pub.publish(other, b"sentinel", 1)
    msg = sub.expect_message()
    assert msg.payload == b"sentinel", f"got {msg.payload!r} on {msg.topic} after unsubscribing"
    sub.expect_no_message(QUIET / 2)


def test_overlapping_subscriptions_deliver_at_least_once_at_max_qos(broker, connected, proto, uid):
    """Two matching filters: one copy or one per subscription, but at least one is delivered at
    the highest QoS of the matching subscriptions (3.1.1 MQTT-3.3.5-1, 5.0 section 4.8)."""
    if broker.peer == "mosquitto" and proto == mqtt.MQTTv311:
        pytest.skip("mosquitto 2.0 sends 3.1.1 clients one copy at the first match's QoS")
    sub = connected("sub", proto)
    sub.subscribe(f"it/{uid}/+", 0)
    sub.subscribe(f"it/{uid}/#", 2)
    pub = connected("pub", proto)
    pub.publish(f"it/{uid}/x", b"both", 2)
    first = sub.expect_message()
    got = [first] + sub.drain(0.4)
    assert 1 <= len(got) <= 2
    assert all(m.payload == b"both" for m in got)
    assert max(m.qos for m in got) == 2
