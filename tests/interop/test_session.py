"""Clean and persistent sessions: the session present flag and the offline queue."""

from __future__ import annotations

import pytest

# A persistent 5.0 session needs a Session Expiry Interval; 3.1.1 ignores it.
EXPIRY = 300


def test_session_present_flag(peer, proto, uid):
    cid = f"{uid}-s"

    def connect(clean: bool) -> bool:
        # 5.0: a clean (3.1.1 sense) session is Clean Start plus Session Expiry 0 (the default).
        c = peer("s", proto, client_id=cid, clean=clean)
        present = c.connect(session_expiry=None if clean else EXPIRY).session_present
        c.disconnect()
        return present

    assert connect(clean=True) is False
    assert connect(clean=False) is False, "a new persistent session must not be 'present'"
    assert connect(clean=False) is True, "the persistent session was not kept"
    assert connect(clean=True) is False, "a clean session must not report a session"
    assert connect(clean=False) is False, "the clean connection must have discarded the session"


def test_clean_session_forgets_subscriptions(peer, proto, uid):
    topic = f"it/{uid}/t"
    sub = peer("sub", proto, clean=False)
    sub.connect(session_expiry=EXPIRY)
    sub.subscribe(topic, 1)
    sub.disconnect()
    # Reconnect clean: the old subscription must be gone.
    sub2 = peer("sub", proto, clean=True)
    assert sub2.connect().session_present is False
    pub = peer("pub", proto)
    pub.connect()
    pub.publish(topic, b"nobody", 1)
    sub2.expect_no_message()


@pytest.mark.parametrize("qos", [1, 2])
def test_offline_messages_are_delivered_on_reconnect_in_order(peer, proto, uid, qos):
    topic = f"it/{uid}/q"
    sub = peer("sub", proto, clean=False)
    sub.connect(session_expiry=EXPIRY)
    assert sub.subscribe(topic, qos) == [qos]
    sub.disconnect()

    pub = peer("pub", proto)
    pub.connect()
    payloads = [f"m{i}".encode() for i in range(10)]
    for p in payloads:
        pub.publish(topic, p, qos)

    back = peer("sub", proto, clean=False)
    assert back.connect(session_expiry=EXPIRY).session_present is True
    got = back.expect_messages(len(payloads))
    assert [m.payload for m in got] == payloads
    assert all(m.qos == qos and m.topic == topic for m in got)
    back.expect_no_message(0.3)
    # Once delivered and acknowledged, nothing is delivered again on the next reconnect.
    back.disconnect()
    again = peer("sub", proto, clean=False)
    assert again.connect(session_expiry=EXPIRY).session_present is True
    again.expect_no_message(0.3)


def test_persistent_session_keeps_receiving_live_messages_after_reconnect(peer, proto, uid):
    topic = f"it/{uid}/live"
    sub = peer("sub", proto, clean=False)
    sub.connect(session_expiry=EXPIRY)
    sub.subscribe(topic, 1)
    sub.disconnect()
    back = peer("sub", proto, clean=False)
    assert back.connect(session_expiry=EXPIRY).session_present is True
    pub = peer("pub", proto)
    pub.connect()
    pub.publish(topic, b"live", 1)
    msg = back.expect_message()
    assert (msg.payload, msg.qos) == (b"live", 1)
