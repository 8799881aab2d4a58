"""MQTT 5.0 features."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqttraw
from peers import QUIET, props

V5 = mqtt.MQTTv5


# -- sessions and expiry ---------------------------------------------------------------------------


def test_session_with_expiry_zero_ends_at_disconnect(peer, uid):
    c = peer("s", V5, clean=False)
    c.connect(session_expiry=0)
    c.subscribe(f"it/{uid}/t", 1)
    c.disconnect()
    again = peer("s", V5, clean=False)
    assert again.connect(session_expiry=0).session_present is False


def test_session_is_gone_after_its_expiry_interval(peer, uid):
    topic = f"it/{uid}/t"
    c = peer("s", V5, clean=False)
    c.connect(session_expiry=1)
    c.subscribe(topic, 1)
    c.disconnect()
    time.sleep(2.2)
    pub = peer("pub", V5)
    pub.connect()
    pub.publish(topic, b"too late", 1)
    again = peer("s", V5, clean=False)
    assert again.connect(session_expiry=60).session_present is False
    again.expect_no_message(0.4)


def test_session_expiry_can_be_shortened_on_disconnect(peer, uid):
    c = peer("s", V5, clean=False)
    c.connect(session_expiry=60)
    c.subscribe(f"it/{uid}/t", 1)
    c.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    again = peer("s", V5, clean=False)
    assert again.connect(session_expiry=60).session_present is False


def test_message_expiry(peer, uid):
    """A queued message whose expiry passed is not delivered; a delivered one carries the
    remaining interval (MQTT-3.3.2-6)."""
    topic = f"it/{uid}/t"
    sub = peer("sub", V5, clean=False)
    sub.connect(session_expiry=60)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = peer("pub", V5)
    pub.connect()
    pub.publish(topic, b"short", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(topic, b"long", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.2)
    back = peer("sub", V5, clean=False)
    assert back.connect(session_expiry=60).session_present is True
    msg = back.expect_message()
    assert msg.payload == b"long"
    remaining = msg.properties.MessageExpiryInterval
    assert 50 <= remaining < 60, f"expiry not decremented: {remaining}"
    back.expect_no_message(0.4)


def test_live_message_keeps_its_expiry_interval(connected, uid):
    topic = f"it/{uid}/t"
    sub = connected("sub", V5)
    sub.subscribe(topic, 1)
    pub = connected("pub", V5)
    pub.publish(topic, b"x", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=30))
    msg = sub.expect_message()
    assert 28 <= msg.properties.MessageExpiryInterval <= 30


# -- publish features ------------------------------------------------------------------------------


def test_topic_alias_from_the_client(connected, uid):
    pub = connected("pub", V5)
    assert getattr(pub.connack.properties, "TopicAliasMaximum", 0) >= 1, "no topic aliases offered"
    t1, t2 = f"it/{uid}/one", f"it/{uid}/two"
    sub = connected("sub", V5)
    sub.subscribe(f"it/{uid}/+", 1)
    alias = lambda: props(PacketTypes.PUBLISH, TopicAlias=1)  # noqa: E731
    pub.publish(t1, b"set", 1, properties=alias())
    pub.publish("", b"by alias", 1, properties=alias())
    pub.publish(t2, b"remapped", 1, properties=alias())
    pub.publish("", b"by new alias", 1, properties=alias())
    got = [(m.topic, m.payload) for m in sub.expect_messages(4)]
    assert got == [(t1, b"set"), (t1, b"by alias"), (t2, b"remapped"), (t2, b"by new alias")]
    assert not pub.disconnected.is_set()


def test_unknown_topic_alias_is_a_protocol_error(raw, uid):
    """An empty topic with an alias never set: DISCONNECT 0x82 (Protocol Error), then close."""
    c = raw(mqttraw.V5)
    c.connect(f"{uid}-a")
    c.publish("", b"x", 1, props=[(0x23, 5)])
    seen = c.expect_closed()
    assert [p.type for p in seen] in ([], [mqttraw.DISCONNECT])
    if seen:
        assert seen[0].reason in (0x82, 0x94), f"{seen[0].reason:#x}"


def test_publish_properties_pass_through(connected, uid):
    topic = f"it/{uid}/req"
    sub = connected("sub", V5)
    sub.subscribe(topic, 1)
    pub = connected("pub", V5)
    user = [("vehicle", "v1"), ("shift", "night"), ("vehicle", "v2")]
    sent = props(
        PacketTypes.PUBLISH,
        UserProperty=user,
        ContentType="application/json",
        ResponseTopic=f"it/{uid}/resp",
        CorrelationData=b"\x00\x01corr",
        PayloadFormatIndicator=1,
    )
    pub.publish(topic, b'{"ok": true}', 1, properties=sent)
    got = sub.expect_message().properties
    assert got.UserProperty == user  # order and duplicates kept (MQTT-3.3.2-18)
    assert got.ContentType == "application/json"
    assert got.ResponseTopic == f"it/{uid}/resp"
    assert got.CorrelationData == b"\x00\x01corr"
    assert got.PayloadFormatIndicator == 1


def test_request_response_round_trip(connected, uid):
    responder = connected("resp", V5)
    responder.subscribe(f"it/{uid}/req", 1)
    requester = connected("req", V5)
    requester.subscribe(f"it/{uid}/reply", 1)
    requester.publish(
        f"it/{uid}/req",
        b"ping",
        1,
        properties=props(PacketTypes.PUBLISH, ResponseTopic=f"it/{uid}/reply", CorrelationData=b"42"),
    )
    req = responder.expect_message()
    responder.publish(
        req.properties.ResponseTopic,
        b"pong",
        1,
        properties=props(PacketTypes.PUBLISH, CorrelationData=req.properties.CorrelationData),
    )
    resp = requester.expect_message()
    assert (resp.payload, resp.properties.CorrelationData) == (b"pong", b"42")


def test_puback_with_no_subscribers_is_success_or_no_matching_subscribers(connected, uid):
    pub = connected("pub", V5)
    rc = pub.publish(f"it/{uid}/nobody", b"x", 1)
    assert rc in (0x00, 0x10), f"PUBACK reason {rc:#x}"
    sub = connected("sub", V5)
    sub.subscribe(f"it/{uid}/somebody", 1)
    assert pub.publish(f"it/{uid}/somebody", b"x", 1) == 0x00


# -- subscription options --------------------------------------------------------------------------


def test_no_local(connected, uid):
    topic = f"it/{uid}/chat"
    me = connected("me", V5)
    me.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
    me.publish(topic, b"mine", 1)
    other = connected("other", V5)
    other.publish(topic, b"theirs", 1)
    assert me.expect_message().payload == b"theirs"
    me.expect_no_message(0.3)


def test_retain_as_published(connected, uid):
    topic = f"it/{uid}/rap"
    keep = connected("keep", V5)
    keep.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
    clear = connected("clear", V5)
    clear.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=False))
    pub = connected("pub", V5)
    try:
        pub.publish(topic, b"r", 1, retain=True)
        pub.publish(topic, b"n", 1, retain=False)
        assert [(m.payload, m.retain) for m in keep.expect_messages(2)] == [(b"r", True), (b"n", False)]
        assert [(m.payload, m.retain) for m in clear.expect_messages(2)] == [(b"r", False), (b"n", False)]
    finally:
        pub.publish(topic, b"", 1, retain=True)


def test_retain_handling(connected, uid):
    topic = f"it/{uid}/rh"
    pub = connected("pub", V5)
    pub.publish(topic, b"kept", 1, retain=True)
    try:
        c = connected("c", V5)
        # 1: send retained only when the subscription is new.
        c.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1))
        msg = c.expect_message()
        assert (msg.payload, msg.retain) == (b"kept", True)
        c.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1))
        c.expect_no_message(0.4)
        # 0: send retained on every subscribe, new or not.
        c.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=0))
        assert c.expect_message().payload == b"kept"
        # 2: never.
        d = connected("d", V5)
        d.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2))
        d.expect_no_message(0.4)
        pub.publish(topic, b"live", 1)  # the subscription itself works
        assert d.expect_message().payload == b"live"
    finally:
        pub.publish(topic, b"", 1, retain=True)


def test_subscription_identifiers_are_delivered_with_the_message(connected, uid):
    c = connected("c", V5)
    exact, prefix, other = f"it/{uid}/a/b", f"it/{uid}/#", f"it/{uid}/z"
    c.subscribe(exact, 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    c.subscribe(prefix, 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=9000))
    pub = connected("pub", V5)
    pub.publish(other, b"one filter", 1)
    msg = c.expect_message()
    assert msg.payload == b"one filter"
    assert msg.properties.SubscriptionIdentifier == [9000]
    pub.publish(exact, b"two filters", 1)
    # One copy carrying both identifiers, or one copy per subscription (MQTT-3.3.4-3/4/5).
    got = [c.expect_message()] + c.drain(0.4)
    ids = sorted(i for m in got for i in m.properties.SubscriptionIdentifier)
    assert ids == [7, 9000], [(m.payload, m.properties.SubscriptionIdentifier) for m in got]
    # A subscription without an identifier delivers none.
    plain = connected("plain", V5)
    plain.subscribe(other, 1)
    pub.publish(other, b"plain", 1)
    assert not hasattr(plain.expect_message().properties, "SubscriptionIdentifier")


def test_shared_subscription_delivers_each_message_to_exactly_one_member(connected, uid):
    topic = f"it/{uid}/work"
    members = [connected(f"m{i}", V5) for i in range(3)]
    for m in members:
        assert m.subscribe(f"$share/g{uid}/{topic}", 1) == [1]
    watcher = connected("watch", V5)  # an ordinary subscriber still gets everything
    watcher.subscribe(topic, 1)
    pub = connected("pub", V5)
    payloads = [f"job {i}".encode() for i in range(30)]
    for p in payloads:
        pub.publish(topic, p, 1)
    assert [m.payload for m in watcher.expect_messages(len(payloads))] == payloads
    time.sleep(0.3)
    per_member = [[m.payload for m in member.drain()] for member in members]
    received = [p for got in per_member for p in got]
    assert sorted(received) == sorted(payloads), "each message to exactly one member"
    busy = sum(1 for got in per_member if got)
    assert busy >= 2, f"messages not distributed: {[len(g) for g in per_member]}"


def test_shared_subscription_and_plain_subscription_on_one_client(connected, uid):
    topic = f"it/{uid}/both"
    c = connected("c", V5)
    c.subscribe(f"$share/g{uid}/{topic}", 1)
    c.subscribe(topic, 1)
    pub = connected("pub", V5)
    pub.publish(topic, b"x", 1)
    got = c.expect_messages(2)
    assert [m.payload for m in got] == [b"x", b"x"]


# -- will delay ------------------------------------------------------------------------------------


def _will_client(raw, uid, delay: int, topic: str):
    c = raw(mqttraw.V5)
    ack = c.connect(
        f"{uid}-w",
        clean=True,
        props=[(mqttraw.SESSION_EXPIRY, 30)],
        will=(topic, b"delayed will", 1, False),
        will_props=[(mqttraw.WILL_DELAY, delay)],
    )
    assert ack.reason == 0
    return c


def test_will_delay_interval_delays_the_will(connected, raw, uid):
    topic = f"it/{uid}/status"
    obs = connected("obs", V5)
    obs.subscribe(topic, 1)
    c = _will_client(raw, uid, 1, topic)
    c.close()
    start = time.monotonic()
    msg = obs.expect_message(timeout=4.0)
    elapsed = time.monotonic() - start
    assert msg.payload == b"delayed will"
    assert elapsed >= 0.8, f"will sent after {elapsed:.2f}s despite a 1 s delay"


def test_will_is_not_sent_if_client_reconnects_within_the_delay(connected, raw, peer, uid):
    topic = f"it/{uid}/status"
    obs = connected("obs", V5)
    obs.subscribe(topic, 1)
    c = _will_client(raw, uid, 2, topic)
    c.close()
    time.sleep(0.3)
    back = peer("w", V5, clean=False)
    assert back.connect(session_expiry=30).session_present is True
    obs.expect_no_message(2.7)
    back.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


@pytest.mark.not_on(
    "mosquitto", reason="mosquitto 2.0 waits for the will delay even when the session ends first"
)
def test_will_is_sent_when_the_session_expires_before_the_delay(connected, raw, uid):
    """The will goes out at the earlier of will delay and session end (MQTT-3.1.3-9)."""
    topic = f"it/{uid}/status"
    obs = connected("obs", V5)
    obs.subscribe(topic, 1)
    c = raw(mqttraw.V5)
    c.connect(
        f"{uid}-w",
        props=[(mqttraw.SESSION_EXPIRY, 0)],
        will=(topic, b"session over", 1, False),
        will_props=[(mqttraw.WILL_DELAY, 60)],
    )
    c.close()
    assert obs.expect_message(timeout=3.0).payload == b"session over"


# -- reason codes and flow control -----------------------------------------------------------------


@pytest.mark.not_on(
    "mosquitto",
    reason="mosquitto 2.0 treats a misplaced '#' as a malformed SUBSCRIBE and disconnects (0x81) "
    "instead of answering SUBACK 0x8F; both are allowed by the spec",
)
def test_suback_rejects_an_invalid_filter_with_0x8f(raw, uid):
    c = raw(mqttraw.V5)
    c.connect(f"{uid}-f")
    c.send(mqttraw.subscribe_packet([("a/#/b", 1), (f"it/{uid}/ok", 1)], 1, mqttraw.V5))
    ack = c.recv_type(mqttraw.SUBACK)
    assert ack.codes == [0x8F, 0x01]
    c.send(mqttraw.PINGREQ_PACKET)  # the connection stays usable
    assert c.recv().type == mqttraw.PINGRESP


def test_broker_respects_the_clients_receive_maximum(raw, connected, uid):
    """A subscriber announcing Receive Maximum 2 never has more than 2 unacknowledged QoS 1
    PUBLISH outstanding; acknowledging one releases the next (MQTT-3.3.4-9)."""
    topic = f"it/{uid}/flow"
    sub = raw(mqttraw.V5)
    assert sub.connect(f"{uid}-rm", props=[(mqttraw.RECEIVE_MAXIMUM, 2)]).reason == 0
    assert sub.subscribe(topic, 1).codes == [1]
    pub = connected("pub", V5)
    payloads = [f"m{i}".encode() for i in range(6)]
    for p in payloads:
        pub.publish(topic, p, 1)
    inflight = [sub.recv_type(mqttraw.PUBLISH), sub.recv_type(mqttraw.PUBLISH)]
    with pytest.raises(TimeoutError):
        extra = sub.recv(timeout=QUIET)
        raise AssertionError(f"a third unacknowledged PUBLISH arrived: {extra}")
    received = list(inflight)
    while len(received) < len(payloads):
        sub.send(mqttraw.puback_packet(inflight.pop(0).packet_id))
        nxt = sub.recv_type(mqttraw.PUBLISH)
        inflight.append(nxt)
        received.append(nxt)
        assert len(inflight) <= 2
    assert [p.payload for p in received] == payloads
    assert all(p.qos == 1 for p in received)
