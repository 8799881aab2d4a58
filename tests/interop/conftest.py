"""Fixtures of the interoperability suite.

The broker under test is found through the environment:

- FLEETMQ_PORT (required): its MQTT port.
- FLEETMQ_HOST (default 127.0.0.1).
- FLEETMQ_PEER: `fleetmq` (default) or `mosquitto`, the reference broker the suite is validated
  against. A test marked `@pytest.mark.not_on("mosquitto", reason=...)` is skipped for that peer:
  used only where the reference broker legitimately differs from what we expect of fleetmq.

Every test gets a fresh unique id (`uid`) to build its client ids and topics from, so tests never
see each other's traffic, sessions or retained messages.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

import mqttraw
from peers import PROTOCOLS, Peer

PEERS = ("fleetmq", "mosquitto")


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    peer: str


def pytest_runtest_setup(item):
    peer = os.environ.get("FLEETMQ_PEER", "fleetmq")
    for mark in item.iter_markers("not_on"):
        if peer in mark.args:
            pytest.skip(f"{peer}: {mark.kwargs.get('reason', 'differs')}")


@pytest.fixture(scope="session")
def broker() -> Broker:
    port = os.environ.get("FLEETMQ_PORT")
    if not port:
        pytest.exit("FLEETMQ_PORT must name the port of the broker under test", returncode=4)
    peer = os.environ.get("FLEETMQ_PEER", "fleetmq")
    if peer not in PEERS:
        pytest.exit(f"FLEETMQ_PEER must be one of {PEERS}, not {peer!r}", returncode=4)
    return Broker(os.environ.get("FLEETMQ_HOST", "127.0.0.1"), int(port), peer)


@pytest.fixture
def uid() -> str:
    """Short and unique: client ids stay within MQTT 3.1's 23 characters."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(params=["v311", "v5"])
def proto(request) -> int:
    """The Paho protocol constant; tests using it run at MQTT 3.1.1 and at 5.0."""
    return PROTOCOLS[request.param]


@pytest.fixture(params=[mqttraw.V311, mqttraw.V5], ids=["v311", "v5"])
def raw_version(request) -> int:
    """The wire protocol level for raw-socket tests run at 3.1.1 and at 5.0."""
    return request.param


@pytest.fixture
def peer(broker, uid):
    """A factory of Paho clients: peer(name, protocol, clean=..., keepalive=...).

    The client id is `{uid}-{name}`. Clients are torn down after the test.
    """
    made: list[Peer] = []

    def make(name: str, protocol: int, client_id: str | None = None, **kwargs) -> Peer:
        cid = f"{uid}-{name}" if client_id is None else client_id
        p = Peer(broker.host, broker.port, cid, protocol, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def raw(broker):
    """A factory of raw-socket clients: raw(version). Closed after the test."""
    made: list[mqttraw.RawClient] = []

    def make(version: int = mqttraw.V311, timeout: float = 5.0) -> mqttraw.RawClient:
        c = mqttraw.RawClient(broker.host, broker.port, version, timeout)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def connected(peer):
    """A factory of connected Paho clients: connected(name, protocol, **Peer kwargs)."""

    def make(name: str, protocol: int, session_expiry: int | None = None, **kwargs) -> Peer:
        p = peer(name, protocol, **kwargs)
        p.connect(session_expiry=session_expiry)
        return p

    return make
