// Unit tests of the page's modules that need no browser: MQTT framing and client behaviour over a
// fake WebSocket, and the fleet state (online count, alarms, depots).
// Run: node --test dashboard/test/   (Node 18.19+ or 20+, no packages)

import test, { mock } from 'node:test';
import assert from 'node:assert/strict';
import { encodeLength, decodeLength, PacketReader, parsePublish, connectPacket, subscribePacket, publishPacket, MqttClient } from '../mqtt.js';
import { Fleet } from '../fleet.js';

const enc = new TextEncoder();
function publish(topic, payload, qos = 0, id = 0, retain = false) {
  const t = enc.encode(topic);
  const p = typeof payload === 'string' ? enc.encode(payload) : payload;
  const body = [t.length >> 8, t.length & 0xff, ...t, ...(qos ? [id >> 8, id & 0xff] : []), ...p];
  return Uint8Array.from([0x30 | (qos << 1) | (retain ? 1 : 0), ...encodeLength(body.length), ...body]);
}
const concat = (...parts) => Uint8Array.from(parts.flatMap((p) => [...p]));

test('remaining length round-trips at every encoding boundary', () => {
  for (const n of [0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455]) {
    const b = encodeLength(n);
    assert.equal(b.length, n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4);
    assert.deepEqual(decodeLength(Uint8Array.from(b), 0), [n, b.length]);
    // Every strict prefix is "need more bytes", not an error.
    for (let k = 0; k < b.length; k++) assert.equal(decodeLength(Uint8Array.from(b.slice(0, k)), 0), null);
  }
  assert.throws(() => decodeLength(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x01]), 0), /malformed/);
});

test('CONNECT and SUBSCRIBE bytes are MQTT 3.1.1', () => {
  assert.deepEqual([...connectPacket('ab', 30)], [0x10, 14, 0, 4, 77, 81, 84, 84, 4, 0x02, 0, 30, 0, 2, 97, 98]);
  assert.deepEqual(
    [...connectPacket('ab', 30, { username: 'u', password: 'p' })],
    [0x10, 20, 0, 4, 77, 81, 84, 84, 4, 0xc2, 0, 30, 0, 2, 97, 98, 0, 1, 117, 0, 1, 112],
  );
  assert.deepEqual([...subscribePacket(7, [['a/+', 1]])], [0x82, 8, 0, 7, 0, 3, 97, 47, 43, 1]);
});

test('packets split across or combined within WebSocket messages come out whole', () => {
  const big = 'x'.repeat(300); // two-byte remaining length
  const stream = concat(
    [0x20, 2, 0, 0], // CONNACK
    [0x90, 3, 0, 1, 1], // SUBACK
    publish('fleet/v1/gps', '{"a":1}'),
    publish('fleet/v2/reefer', big, 1, 513),
    [0xd0, 0], // PINGRESP
  );
  const expect = [2, 9, 3, 3, 13];
  const types = (chunks) => {
    const r = new PacketReader();
    return chunks.flatMap((c) => r.push(c)).map((p) => p.type);
  };
  assert.deepEqual(types([stream]), expect);
  assert.deepEqual(types([...stream].map((b) => Uint8Array.of(b))), expect);
  for (let cut = 0; cut <= stream.length; cut++) {
    assert.deepEqual(types([stream.subarray(0, cut), stream.subarray(cut)]), expect, `cut at ${cut}`);
  }
  const r = new PacketReader();
  const [, , , p] = r.push(stream);
  const m = parsePublish(p.flags, p.body);
  assert.equal(m.topic, 'fleet/v2/reefer');
  assert.equal(m.qos, 1);
  assert.equal(m.id, 513);
  assert.equal(new TextDecoder().decode(m.payload), big);
});

test('an oversized packet is refused before it is buffered', () => {
  const r = new PacketReader(1000);
  assert.throws(() => r.push(Uint8Array.from([0x30, ...encodeLength(5000)])), /exceeds/);
});

/** Runs `body` with Node's fake timers for setTimeout and setInterval. */
function withFakeTimers(body) {
  try {
    mock.timers.enable({ apis: ['setTimeout', 'setInterval'] }); // Node >= 20.11
  } catch (_) {
    mock.timers.enable(['setTimeout', 'setInterval']); // Node 18.19+ (Debian 12)
  }
  try {
    body();
  } finally {
    mock.timers.reset();
  }
}

class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.all.push(this);
  }
  send(b) {
    this.sent.push([...b]);
  }
  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.();
  }
  open() {
    this.readyState = 1;
    this.onopen();
  }
  recv(bytes) {
    this.onmessage({ data: Uint8Array.from(bytes).buffer });
  }
}

test('client connects, subscribes, acknowledges QoS 1, pings and reconnects', () => {
  withFakeTimers(() => {
    FakeSocket.all = [];
    const got = [];
    const states = [];
    const c = new MqttClient('ws://x/mqtt', {
      subscriptions: [['fleet/+/gps', 1]],
      keepalive: 10,
      onMessage: (t, p, m) => got.push([t, new TextDecoder().decode(p), m.qos, m.retain]),
      onState: (s) => states.push(s),
      WebSocketImpl: FakeSocket,
    });
    c.start();
    const ws = FakeSocket.all[0];
    assert.deepEqual(ws.protocols, ['mqtt']);
    ws.open();
    assert.equal(ws.sent[0][0], 0x10);
    assert.match(c.clientId, /^fleetdash-[0-9a-f]{12}$/);
    ws.recv([0x20, 2, 0, 0]);
    assert.equal(ws.sent[1][0], 0x82, 'SUBSCRIBE after CONNACK');
    // A QoS 0 and a QoS 1 publish in one WebSocket message, the second cut short.
    const two = concat(publish('fleet/a/gps', 'zero', 0, 0, true), publish('fleet/b/gps', 'one', 1, 42));
    ws.recv(two.subarray(0, two.length - 2));
    ws.recv(two.subarray(two.length - 2));
    assert.deepEqual(got, [['fleet/a/gps', 'zero', 0, true], ['fleet/b/gps', 'one', 1, false]]);
    assert.deepEqual(ws.sent[2], [0x40, 2, 0, 42], 'PUBACK for the QoS 1 publish');
    ws.recv([0x90, 3, 0, 1, 1]);
    assert.equal(states.at(-1), 'subscribed');
    // Acknowledgements of one WebSocket message go out together, in one frame.
    const sentBefore = ws.sent.length;
    ws.recv(concat(publish('fleet/c/gps', 'x', 1, 1), publish('fleet/d/gps', 'y', 1, 2)));
    assert.equal(ws.sent.length, sentBefore + 1);
    assert.deepEqual(ws.sent.at(-1), [0x40, 2, 0, 1, 0x40, 2, 0, 2]);
    mock.timers.tick(7500);
    assert.deepEqual(ws.sent.at(-1), [0xc0, 0], 'PINGREQ within the keepalive');
    ws.recv([0xd0, 0]);
    mock.timers.tick(7500);
    assert.deepEqual(ws.sent.at(-1), [0xc0, 0]);
    // No PINGRESP this time: the link is declared dead at the next tick, then retried.
    mock.timers.tick(7500);
    assert.equal(ws.readyState, 3);
    assert.equal(states.at(-1), 'waiting');
    mock.timers.tick(1000);
    assert.equal(FakeSocket.all.length, 2, 'reconnected after back-off');
    const ws2 = FakeSocket.all[1];
    ws2.open();
    ws2.recv([0x20, 2, 0, 0]);
    assert.equal(ws2.sent[1][0], 0x82, 'subscribes again after reconnecting');
    // A refused connection backs off further each time.
    ws2.recv([0x20, 2, 0, 5]);
    assert.equal(ws2.readyState, 3);
    c.stop();
  });
});

test('a broker that wants credentials stops the retries until login() sends them', () => {
  withFakeTimers(() => {
    FakeSocket.all = [];
    const states = [];
    const c = new MqttClient('ws://x/mqtt', { WebSocketImpl: FakeSocket, onState: (s, d) => states.push([s, d]) });
    c.start();
    const ws = FakeSocket.all[0];
    ws.open();
    assert.equal(ws.sent[0][9], 0x02, 'anonymous: clean session, no user name or password flags');
    ws.recv([0x20, 2, 0, 5]); // not authorized
    assert.deepEqual(states.at(-1), ['refused', 5]);
    mock.timers.tick(60000);
    assert.equal(FakeSocket.all.length, 1, 'no retry with the same (no) credentials');
    c.login('dispatch', 'pw');
    const ws2 = FakeSocket.all[1];
    ws2.open();
    const connect = ws2.sent[0];
    assert.equal(connect[9], 0x02 | 0x80 | 0x40, 'user name and password flags');
    const text = new TextDecoder().decode(Uint8Array.from(connect));
    assert.ok(text.endsWith('\0\x08dispatch\0\x02pw'), 'user name then password, each length-prefixed');
    ws2.recv([0x20, 2, 0, 0]);
    assert.equal(states.at(-1)[0], 'connected');
    c.stop();
  });
});

const gps = (seq, ts, lat, lon, speed = 40) => JSON.stringify({ ts, seq, lat, lon, speed_kmh: speed, heading_deg: 90 });
const reefer = (seq, ts, temp, setpoint = 4) => JSON.stringify({ ts, seq, temp_c: temp, setpoint_c: setpoint, door_open: false, compressor_on: true });

test('online count follows status and recent data', () => {
  const f = new Fleet({ offlineAfterS: 60 });
  const t = 1_000_000;
  f.handle('fleet/a/status', 'online', {}, t);
  f.handle('fleet/b/status', 'offline', {}, t);
  f.handle('fleet/c/gps', gps(5, 1, 52, 4), {}, t); // no status, but data
  assert.equal(f.onlineCount(t), 2);
  assert.equal(f.onlineCount(t + 61_000), 1, 'data-only vehicle goes offline after the timeout');
  f.handle('fleet/b/gps', gps(9, 2, 52, 4), {}, t + 1000); // data after its offline status
  assert.equal(f.onlineCount(t + 2000), 3);
  f.handle('fleet/a/status', '', { retain: true }, t + 3000); // cleared: forgotten
  assert.equal(f.vehicles.has('a'), false);
});

test('excursion alarm needs the delay in reading time; offline and silent alarms', () => {
  const f = new Fleet({ bandC: 3, excursionDelayS: 60, offlineAfterS: 30 });
  const now = 5_000_000;
  f.handle('fleet/hot/status', 'online', {}, now);
  f.handle('fleet/hot/reefer', reefer(1, 0, 9), {}, now);
  f.handle('fleet/hot/reefer', reefer(2, 30_000, 9.5), {}, now);
  assert.equal(f.alarms(now).length, 0, 'out of band for 30 s only');
  f.handle('fleet/hot/reefer', reefer(3, 61_000, 9.5), {}, now);
  assert.deepEqual(f.alarms(now).map((a) => [a.kind, a.id]), [['excursion', 'hot']]);
  assert.equal(f.state(f.vehicles.get('hot'), now), 'excursion');
  f.handle('fleet/hot/reefer', reefer(4, 62_000, 5), {}, now);
  assert.equal(f.alarms(now).length, 0, 'back in band clears it');
  f.handle('fleet/gone/status', 'offline', {}, now);
  f.handle('fleet/quiet/status', 'online', {}, now);
  const kinds = f.alarms(now + 31_000).map((a) => `${a.kind}:${a.id}`).sort();
  assert.deepEqual(kinds, ['offline:gone', 'silent:hot', 'silent:quiet']);
  // A wider band recomputes from history.
  f.handle('fleet/hot/reefer', reefer(5, 70_000, 8), {}, now);
  f.handle('fleet/hot/reefer', reefer(6, 140_000, 8), {}, now);
  assert.equal(f.hasExcursion(f.vehicles.get('hot')), true);
  f.setSettings({ bandC: 5 });
  assert.equal(f.hasExcursion(f.vehicles.get('hot')), false);
});

test('depots are inferred from first positions, or taken from fleet/_depots', () => {
  const f = new Fleet();
  f.handle('fleet/a/gps', gps(0, 1, 51.9, 4.4, 0), {});
  f.handle('fleet/b/gps', gps(1, 1, 51.9005, 4.4005, 0), {}); // 60 m away: same depot
  f.handle('fleet/c/gps', gps(0, 1, 52.3, 4.9, 0), {});
  f.handle('fleet/d/gps', gps(500, 1, 52.0, 5.0), {}); // mid-run: not a start
  f.handle('fleet/a/gps', gps(2, 2, 52.1, 5.1), {}); // a's second fix: not a start either
  assert.deepEqual(f.depots.map((d) => d.count), [2, 1]);
  f.handle('fleet/_depots', JSON.stringify([{ name: 'Rotterdam', lat: 51.9, lon: 4.4 }]), { retain: true });
  assert.deepEqual(f.depots.map((d) => d.name), ['Rotterdam']);
});

test("the broker's cold-chain rules replace the page's own band and delay", () => {
  const f = new Fleet();
  const t0 = 1_700_000_000_000;
  // 7.6 °C with setpoint 2: out of the page's setpoint ± 3, inside the chilled 2–8 °C band.
  f.handle('fleet/v1/reefer', reefer(0, t0, 7.6, 2));
  f.handle('fleet/v1/reefer', reefer(1, t0 + 120_000, 7.6, 2));
  const v = f.vehicles.get('v1');
  assert.ok(f.hasExcursion(v), 'out of setpoint ± 3 for 2 minutes');
  const rules = { frozen_below_c: 0, chilled: { low_c: 2, high_c: 8 }, frozen: { low_c: -30, high_c: -15 }, alarm_after_s: 300 };
  f.handle('fleet/_config/coldchain', JSON.stringify(rules), { retain: true });
  assert.equal(v.excursionStart, null, 'inside the chilled band: no excursion');
  assert.deepEqual(f.band(-18), [-30, -15]);
  // Out of the band: the alarm waits the rules' 300 s, not the page's 60.
  f.handle('fleet/v1/reefer', reefer(2, t0 + 130_000, 8.4, 2));
  f.handle('fleet/v1/reefer', reefer(3, t0 + 290_000, 8.6, 2));
  assert.ok(!f.hasExcursion(v), 'out for 160 s of the 300 required');
  f.handle('fleet/v1/reefer', reefer(4, t0 + 440_000, 8.5, 2));
  assert.ok(f.hasExcursion(v), 'out for 310 s');
  assert.equal(v.excursionStart, t0 + 130_000);
  f.handle('fleet/_config/coldchain', '{"chilled": "warm"}', { retain: true });
  assert.equal(f.rejected, 1, 'malformed rules are refused, the old ones kept');
  assert.deepEqual(f.band(4), [2, 8]);
});

test("the simulator's world gives streets, customers and depots to draw", () => {
  const f = new Fleet();
  const world = {
    type: 'FeatureCollection',
    features: [
      { type: 'Feature', geometry: { type: 'Point', coordinates: [10.0, 53.55] }, properties: { name: 'depot-0', kind: 'depot' } },
      { type: 'Feature', geometry: { type: 'MultiPoint', coordinates: [[10.01, 53.56], [10.02, 53.57]] }, properties: { kind: 'customer' } },
      { type: 'Feature', geometry: { type: 'LineString', coordinates: [[10.0, 53.55], [10.01, 53.55], [99, 999]] }, properties: { speed_kmh: 50 } },
    ],
  };
  f.handle('fleet/_world', JSON.stringify(world), { retain: true });
  assert.equal(f.world.roads.length, 1);
  assert.equal(f.world.roads[0].length, 4, 'two valid points, the out-of-range one dropped');
  assert.deepEqual(f.depots.map((d) => d.name), ['depot-0'], 'the world names the depots');
  assert.equal(f.world.customers.length, 2, 'customers from a MultiPoint');
  f.handle('fleet/_world', '{"type": "Feature"}', { retain: true });
  assert.equal(f.rejected, 1);
  f.handle('fleet/_world', '', { retain: true });
  assert.equal(f.world, null, 'a cleared world is forgotten');
});

test('an acknowledgement covers its alarm on every page, and unacknowledged alarms come first', () => {
  const f = new Fleet({ excursionDelayS: 0 });
  const t0 = 1_700_000_000_000;
  for (const id of ['a', 'b']) {
    f.handle(`fleet/${id}/reefer`, reefer(0, t0, 4, 4));
    f.handle(`fleet/${id}/reefer`, reefer(1, t0 + 60_000, 12, 4));
  }
  f.handle('fleet/a/reefer', reefer(2, t0 + 120_000, 12, 4)); // a: out longest, listed first
  assert.deepEqual(f.alarms().map((a) => a.id), ['a', 'b']);
  const since = f.alarms()[0].since;
  assert.equal(since, t0 + 60_000, 'named by its first reading out of band');
  f.handle('fleet/_ack/a', JSON.stringify({ kind: 'excursion', since, by: 'dispatch', at: t0 }), { retain: true });
  const alarms = f.alarms();
  assert.deepEqual(alarms.map((a) => [a.id, Boolean(a.ack)]), [['b', false], ['a', true]], 'unacknowledged first');
  assert.equal(alarms[1].ack.by, 'dispatch');
  // Back in band, then out again: a new excursion, not covered by the old acknowledgement.
  f.handle('fleet/a/reefer', reefer(3, t0 + 180_000, 4, 4));
  f.handle('fleet/a/reefer', reefer(4, t0 + 240_000, 12, 4));
  assert.equal(f.alarms().find((a) => a.id === 'a').ack, null);
  assert.deepEqual(
    [...publishPacket('fleet/_ack/a', 'x', { qos: 1, retain: true, id: 7 })],
    [0x33, 17, 0, 12, ...new TextEncoder().encode('fleet/_ack/a'), 0, 7, 120],
  );
});

test('malformed messages are counted, not applied; late fixes do not move the vehicle', () => {
  const f = new Fleet();
  f.handle('fleet/a/gps', '{"ts":1}', {});
  f.handle('fleet/a/reefer', 'nope', {});
  f.handle('fleet/bad id/gps', gps(1, 1, 0, 0), {});
  assert.equal(f.rejected, 3);
  assert.equal(f.vehicles.size, 0);
  f.handle('fleet/a/gps', gps(2, 2000, 10, 10), {});
  f.handle('fleet/a/gps', gps(1, 1000, 20, 20), {});
  assert.equal(f.vehicles.get('a').lat, 10);
});
