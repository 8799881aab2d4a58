// A small MQTT 3.1.1 client over WebSocket (MQTT spec section 6: subprotocol `mqtt`, binary
// frames). It does what the dashboard needs and no more: CONNECT with keepalive and a random
// client id, SUBSCRIBE, receive PUBLISH at QoS 0/1 (and 2, acknowledged), PINGREQ, and reconnect
// with back-off. A WebSocket message may hold part of an MQTT packet or several packets, so bytes
// go through a reassembly buffer and are cut into packets by their remaining length.

const MAX_PACKET = 1 << 20; // larger incoming packets are a protocol error for this page

/** Encodes `n` as an MQTT variable byte integer ("remaining length"). */
export function encodeLength(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/**
 * Reads a remaining length at `buf[i]`. Returns `[value, bytesUsed]`, `null` when more bytes are
 * needed, and throws when the encoding is longer than the four bytes MQTT allows.
 */
export function decodeLength(buf, i) {
  let value = 0;
  let mult = 1;
  for (let k = 0; k < 4; k++) {
    if (i + k >= buf.length) return null;
    const b = buf[i + k];
    value += (b & 0x7f) * mult;
    if ((b & 0x80) === 0) return [value, k + 1];
    mult *= 128;
  }
  throw new Error('malformed remaining length');
}

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

function str(s) {
  const b = utf8.encode(s);
  return [b.length >> 8, b.length & 0xff, ...b];
}

function packet(type, body) {
  return new Uint8Array([type, ...encodeLength(body.length), ...body]);
}

/** CONNECT, MQTT 3.1.1, clean session; with a user name and password when `credentials` are given. */
export function connectPacket(clientId, keepalive, credentials = null) {
  let flags = 0x02;
  const tail = [...str(clientId)];
  if (credentials) {
    flags |= 0x80 | 0x40;
    tail.push(...str(credentials.username), ...str(credentials.password));
  }
  const body = [...str('MQTT'), 4, flags, keepalive >> 8, keepalive & 0xff, ...tail];
  return packet(0x10, body);
}

/** CONNACK return codes (3.1.1) that only other credentials can cure. */
const NEEDS_LOGIN = new Set([4, 5]); // bad user name or password; not authorized

/** PUBLISH of `payload` (a string) to `topic`; packet id `id` for QoS 1. */
export function publishPacket(topic, payload, { qos = 0, retain = false, id = 0 } = {}) {
  const body = [...str(topic), ...(qos ? [id >> 8, id & 0xff] : []), ...utf8.encode(payload)];
  return packet(0x30 | (qos << 1) | (retain ? 1 : 0), body);
}

/** SUBSCRIBE with packet id `id` to `filters` ([topic, qos] pairs). */
export function subscribePacket(id, filters) {
  const body = [id >> 8, id & 0xff];
  for (const [topic, qos] of filters) body.push(...str(topic), qos);
  return packet(0x82, body);
}

const PINGREQ = new Uint8Array([0xc0, 0]);
const DISCONNECT = new Uint8Array([0xe0, 0]);

/**
 * Cuts complete packets out of a byte stream. `push(bytes)` returns the packets completed by
 * these bytes as `{type, flags, body}` (body is a view, not a copy); leftover bytes wait for the
 * next push.
 */
export class PacketReader {
  constructor(maxPacket = MAX_PACKET) {
    this.rest = null;
    this.maxPacket = maxPacket;
  }

  push(chunk) {
    let buf = chunk;
    if (this.rest) {
      buf = new Uint8Array(this.rest.length + chunk.length);
      buf.set(this.rest);
      buf.set(chunk, this.rest.length);
      this.rest = null;
    }
    const out = [];
    let i = 0;
    while (buf.length - i >= 2) {
      const len = decodeLength(buf, i + 1);
      if (!len) break;
      const [n, used] = len;
      if (n > this.maxPacket) throw new Error(`packet of ${n} bytes exceeds ${this.maxPacket}`);
      const start = i + 1 + used;
      if (buf.length < start + n) break;
      out.push({ type: buf[i] >> 4, flags: buf[i] & 0x0f, body: buf.subarray(start, start + n) });
      i = start + n;
    }
    // Keep a copy of the tail: the chunk's buffer is not ours to hold on to.
    if (i < buf.length) this.rest = buf.slice(i);
    return out;
  }
}

/** Decodes a PUBLISH body: `{topic, payload, qos, retain, dup, id}`. */
export function parsePublish(flags, body) {
  const qos = (flags >> 1) & 3;
  if (body.length < 2) throw new Error('short PUBLISH');
  const tlen = (body[0] << 8) | body[1];
  let i = 2 + tlen;
  const topic = utf8d.decode(body.subarray(2, i));
  let id = 0;
  if (qos > 0) {
    id = (body[i] << 8) | body[i + 1];
    i += 2;
  }
  if (i > body.length || qos === 3) throw new Error('malformed PUBLISH');
  return { topic, payload: body.subarray(i), qos, retain: (flags & 1) === 1, dup: (flags & 8) === 8, id };
}

function randomId() {
  const b = new Uint8Array(6);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return 'fleetdash-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * The client. `onMessage(topic, payloadBytes, {qos, retain})` is called for every PUBLISH;
 * `onState(state, detail)` with 'connecting' | 'connected' | 'subscribed' | 'closed' |
 * 'waiting' (detail: ms until the next attempt) | 'error' (detail: text) | 'refused' (detail:
 * the CONNACK return code; the broker wants other credentials, and the client waits for
 * `login()` instead of retrying). Credentials live in this object only, never in storage.
 */
export class MqttClient {
  constructor(url, { subscriptions = [], keepalive = 30, onMessage = () => {}, onState = () => {}, WebSocketImpl } = {}) {
    this.url = url;
    this.subscriptions = subscriptions;
    this.keepalive = keepalive;
    this.onMessage = onMessage;
    this.onState = onState;
    this.WS = WebSocketImpl || globalThis.WebSocket;
    this.clientId = randomId();
    this.backoff = 500;
    this.nextId = 1;
    this.stopped = false;
    this.received = 0;
    this.ws = null;
    this.timers = [];
    this.acks = []; // bytes of acknowledgements not sent yet
    this.credentials = null;
  }

  /** Connects again with `username` and `password` (after a 'refused' state). */
  login(username, password) {
    this.credentials = { username, password };
    this.backoff = 500;
    this.start();
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.ws && this.ws.readyState === 1) this.ws.send(DISCONNECT);
    if (this.ws) this.ws.close();
  }

  clearTimers() {
    for (const t of this.timers) clearTimeout(t), clearInterval(t);
    this.timers = [];
  }

  open() {
    this.clearTimers();
    this.acks.length = 0; // acknowledgements belong to the connection they were due on
    this.onState('connecting');
    const reader = new PacketReader();
    let ws;
    try {
      ws = new this.WS(this.url, ['mqtt']);
    } catch (e) {
      this.onState('error', String(e));
      this.retry();
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    let closed = false;
    let awaitingPong = false;
    const fail = (why) => {
      if (closed || this.ws !== ws) return;
      closed = true;
      this.clearTimers();
      if (why) this.onState('error', why);
      try {
        ws.close();
      } catch (_) {
        /* already closed */
      }
      this.retry();
    };
    // The server must answer CONNECT within a reasonable time.
    this.timers.push(setTimeout(() => fail('no CONNACK within 10 s'), 10000));
    ws.onopen = () => ws.send(connectPacket(this.clientId, this.keepalive, this.credentials));
    ws.onerror = () => fail('WebSocket error');
    ws.onclose = () => fail(null);
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') return fail('text frame from server');
      try {
        for (const p of reader.push(new Uint8Array(ev.data))) this.handle(ws, p, () => (awaitingPong = false));
      } catch (e) {
        return fail(String(e.message || e));
      }
      this.flushAcks(ws);
    };
    this.onConnack = () => {
      this.clearTimers();
      this.backoff = 500;
      this.onState('connected');
      if (this.subscriptions.length) ws.send(subscribePacket(this.nextPacketId(), this.subscriptions));
      if (this.keepalive > 0) {
        // Ping well inside the keepalive; a missing PINGRESP by the next ping means a dead link.
        const every = Math.max(1000, this.keepalive * 750);
        this.timers.push(
          setInterval(() => {
            if (awaitingPong) return fail('no PINGRESP');
            awaitingPong = true;
            ws.send(PINGREQ);
          }, every),
        );
      }
    };
  }

  /**
   * Publishes `payload` (a string) to `topic` at QoS 0 or 1; returns false when not connected
   * (nothing is queued: the caller's user sees the page is not live and tries again).
   */
  publish(topic, payload, { qos = 1, retain = false } = {}) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    const id = qos ? this.nextPacketId() : 0;
    this.ws.send(publishPacket(topic, payload, { qos, retain, id }));
    return true;
  }

  /** Sends the acknowledgements for one WebSocket message's packets as one frame. */
  flushAcks(ws) {
    if (!this.acks.length) return;
    if (ws.readyState === 1) ws.send(new Uint8Array(this.acks));
    this.acks.length = 0;
  }

  nextPacketId() {
    const id = this.nextId;
    this.nextId = id === 0xffff ? 1 : id + 1;
    return id;
  }

  handle(ws, p, pong) {
    switch (p.type) {
      case 2: // CONNACK
        if (p.body.length < 2) throw new Error('short CONNACK');
        if (NEEDS_LOGIN.has(p.body[1])) {
          // Retrying with the same credentials cannot help: wait for login().
          this.stopped = true;
          this.clearTimers();
          this.onState('refused', p.body[1]);
          ws.close();
          return;
        }
        if (p.body[1] !== 0) throw new Error(`CONNACK refused, return code ${p.body[1]}`);
        this.onConnack();
        break;
      case 3: {
        // PUBLISH
        const m = parsePublish(p.flags, p.body);
        this.received++;
        if (m.qos === 1) this.acks.push(0x40, 2, m.id >> 8, m.id & 0xff); // PUBACK
        else if (m.qos === 2) this.acks.push(0x50, 2, m.id >> 8, m.id & 0xff); // PUBREC; PUBCOMP on PUBREL
        this.onMessage(m.topic, m.payload, m);
        break;
      }
      case 4: // PUBACK of one of this page's PUBLISHes: nothing more to do
        break;
      case 6: // PUBREL
        this.acks.push(0x70, 2, p.body[0], p.body[1]); // PUBCOMP
        break;
      case 9: {
        // SUBACK
        const refused = Array.from(p.body.subarray(2)).filter((rc) => rc === 0x80).length;
        if (refused) this.onState('error', `${refused} subscription(s) refused`);
        this.onState('subscribed');
        break;
      }
      case 13: // PINGRESP
        pong();
        break;
      default:
        throw new Error(`unexpected packet type ${p.type}`);
    }
  }

  retry() {
    if (this.stopped) return;
    // Exponential back-off with jitter, so a restarted broker is not hit by every page at once.
    const wait = Math.round(this.backoff * (0.75 + Math.random() * 0.5));
    this.backoff = Math.min(this.backoff * 2, 30000);
    this.onState('waiting', wait);
    this.timers.push(setTimeout(() => this.open(), wait));
  }
}
