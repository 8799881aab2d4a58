// The fleet's state as the page knows it: one record per vehicle, updated by incoming messages
// and nothing else (no DOM here, so Node can test it). Rendering reads it once per frame.
//
// Clocks: "last seen" and the offline rule use this browser's clock at receipt (the simulator's
// `ts` can run faster than real time); excursion durations use the readings' own `ts`, because
// what matters is how long the cargo was out of band, also for readings delivered late.
//
// Cold-chain rules: the broker publishes the bands it and its reports judge excursions by as
// the retained `fleet/_config/coldchain` (`{frozen_below_c, chilled: {low_c, high_c}, frozen:
// {...}, alarm_after_s}`); with them the page alarms exactly when the reports count an
// excursion. Without them (another broker), the band is the setpoint ± the page's own setting.
//
// World: fleetmq's simulator publishes its map as the retained `fleet/_world` (GeoJSON: `Point`s
// with `kind` depot or customer, `LineString`s for the streets); the page draws it under the
// vehicles, so a dispatcher can tell a depot stop from a roadside one.
//
// Depots: a retained `fleet/_depots` message (a JSON list of `{name?, lat, lon}`) is used when
// present, else the world's depots; otherwise depots are inferred from where
// vehicles start: the first GPS fix the page gets from a vehicle is its start when its `seq` is
// below 4 (`seq` counts every message of a vehicle from 0, reefer readings included), and starts
// within 1 km of each other are one depot. A page opened
// mid-run sees no first positions and shows no inferred depots, rather than guessing.

import { project } from './map.js';

export const DEFAULT_SETTINGS = {
  bandC: 3, // excursion band: setpoint ± bandC
  excursionDelayS: 60, // out of band for longer than this (reading time) raises the alarm
  offlineAfterS: 60, // no message for this long (receipt time) raises the alarm
};

const TRAIL_POINTS = 48; // per vehicle, one every TRAIL_EVERY_MS of reading time at most
const TRAIL_EVERY_MS = 5000;
const TEMP_POINTS = 240; // per vehicle, one every TEMP_EVERY_MS of reading time at most
const TEMP_EVERY_MS = 5000;
const DEPOT_RADIUS_M = 1000;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const decoder = new TextDecoder();
export const RULES_TOPIC = 'fleet/_config/coldchain';
export const WORLD_TOPIC = 'fleet/_world';
export const ACK_PREFIX = 'fleet/_ack/';

const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
const optNum = (x) => (isNum(x) ? x : undefined);

function newVehicle(id, now) {
  return {
    id,
    firstSeen: now, // receipt time of the first message of any kind
    lastSeen: 0, // receipt time of the last gps/reefer message
    status: null, // last retained status: 'online' | 'offline' | null
    statusAt: 0,
    x: undefined, // projected position; undefined until the first fix
    y: undefined,
    lat: undefined,
    lon: undefined,
    speed: 0,
    heading: 0,
    gpsTs: -Infinity,
    trail: new Float64Array(TRAIL_POINTS * 2),
    trailLen: 0,
    trailHead: 0,
    trailTs: -Infinity,
    temp: undefined,
    setpoint: undefined,
    reeferTs: -Infinity,
    temps: null, // {ts: Float64Array, temp: Float32Array, set: Float32Array, door: Uint8Array, n, head}
    tempKeptTs: -Infinity,
    excursionStart: null, // reading ts at which the current out-of-band run began
  };
}

export class Fleet {
  constructor(settings = DEFAULT_SETTINGS) {
    this.settings = { ...DEFAULT_SETTINGS, ...settings };
    this.vehicles = new Map();
    this.inferredDepots = []; // {lat, lon, x, y, count, name}
    this.publishedDepots = null; // from fleet/_depots
    this.rules = null; // from fleet/_config/coldchain
    this.world = null; // from fleet/_world: {roads: [Float64Array of x, y], customers, depots}
    this.acks = new Map(); // vehicle id -> {kind, since, by, at}, from fleet/_ack/{id}
    this.version = 0; // bumped on every change, so renderers can skip idle frames
    this.messages = 0;
    this.rejected = 0;
    this.lastReject = '';
  }

  get depots() {
    return this.publishedDepots || (this.world?.depots.length ? this.world.depots : this.inferredDepots);
  }

  vehicle(id, now) {
    let v = this.vehicles.get(id);
    if (!v) this.vehicles.set(id, (v = newVehicle(id, now)));
    return v;
  }

  reject(topic, why) {
    this.rejected++;
    this.lastReject = `${topic}: ${why}`;
  }

  /** Applies one message. `payload` is bytes (Uint8Array) or a string. */
  handle(topic, payload, { retain = false } = {}, now = Date.now()) {
    this.messages++;
    const parts = topic.split('/');
    if (parts[0] !== 'fleet') return;
    const text = typeof payload === 'string' ? payload : decoder.decode(payload);
    if (parts.length === 2 && parts[1] === '_depots') return this.handleDepots(topic, text);
    if (topic === RULES_TOPIC) return this.handleRules(text);
    if (topic === WORLD_TOPIC) return this.handleWorld(text);
    if (parts.length === 3 && parts[1] === '_ack' && ID_RE.test(parts[2])) return this.handleAck(parts[2], text);
    if (parts.length !== 3 || !ID_RE.test(parts[1])) return this.reject(topic, 'not a fleet topic');
    const [, id, kind] = parts;
    if (kind === 'status') return this.handleStatus(id, text.trim(), now);
    if (kind !== 'gps' && kind !== 'reefer') return;
    let m;
    try {
      m = JSON.parse(text);
    } catch (_) {
      return this.reject(topic, 'not JSON');
    }
    if (!m || !isNum(m.ts) || !isNum(m.seq)) return this.reject(topic, 'missing ts or seq');
    if (kind === 'gps') {
      if (!isNum(m.lat) || !isNum(m.lon) || !isNum(m.speed_kmh) || !isNum(m.heading_deg))
        return this.reject(topic, 'missing lat, lon, speed_kmh or heading_deg');
      if (Math.abs(m.lat) > 90 || Math.abs(m.lon) > 180) return this.reject(topic, 'position out of range');
    } else if (!isNum(m.temp_c) || !isNum(m.setpoint_c) || typeof m.door_open !== 'boolean' || typeof m.compressor_on !== 'boolean') {
      return this.reject(topic, 'missing temp_c, setpoint_c, door_open or compressor_on');
    }
    const v = this.vehicle(id, now);
    // A retained reading is old news: it does not make the vehicle look recently seen.
    if (!retain) v.lastSeen = now;
    if (kind === 'gps') this.applyGps(v, m);
    else this.applyReefer(v, m);
    this.version++;
  }

  handleStatus(id, text, now) {
    if (text === '') {
      // A cleared retained status: forget vehicles we know nothing else about.
      const v = this.vehicles.get(id);
      if (v && v.lastSeen === 0 && v.x === undefined && v.temp === undefined) this.vehicles.delete(id);
      else if (v) v.status = null;
      this.version++;
      return;
    }
    if (text !== 'online' && text !== 'offline') return this.reject(`fleet/${id}/status`, `status "${text.slice(0, 20)}"`);
    const v = this.vehicle(id, now);
    v.status = text;
    v.statusAt = now;
    this.version++;
  }

  handleDepots(topic, text) {
    if (text.trim() === '') {
      this.publishedDepots = null;
    } else {
      let list;
      try {
        list = JSON.parse(text);
        if (list && Array.isArray(list.depots)) list = list.depots;
        if (!Array.isArray(list)) throw new Error();
      } catch (_) {
        return this.reject(topic, 'expected a JSON list of {name, lat, lon}');
      }
      this.publishedDepots = list
        .filter((d) => d && isNum(d.lat) && isNum(d.lon))
        .map((d, i) => {
          const [x, y] = project(d.lat, d.lon);
          return { lat: d.lat, lon: d.lon, x, y, name: String(d.name || d.id || `Depot ${i + 1}`) };
        });
    }
    this.version++;
  }

  applyGps(v, m) {
    if (m.seq < 4 && v.x === undefined) this.noteStart(m.lat, m.lon);
    if (m.ts < v.gpsTs) return; // late (store-and-forward) or duplicate: not the current position
    v.gpsTs = m.ts;
    v.lat = m.lat;
    v.lon = m.lon;
    [v.x, v.y] = project(m.lat, m.lon);
    v.speed = m.speed_kmh;
    v.heading = m.heading_deg;
    v.odometer = optNum(m.odometer_km);
    v.hdop = optNum(m.hdop);
    if (m.ts - v.trailTs >= TRAIL_EVERY_MS) {
      v.trailTs = m.ts;
      v.trail[2 * v.trailHead] = v.x;
      v.trail[2 * v.trailHead + 1] = v.y;
      v.trailHead = (v.trailHead + 1) % TRAIL_POINTS;
      v.trailLen = Math.min(v.trailLen + 1, TRAIL_POINTS);
    }
  }

  applyReefer(v, m) {
    if (m.ts < v.reeferTs) return;
    v.reeferTs = m.ts;
    v.temp = m.temp_c;
    v.setpoint = m.setpoint_c;
    v.door = m.door_open;
    v.compressor = m.compressor_on;
    v.ambient = optNum(m.ambient_c);
    v.humidity = optNum(m.humidity_pct);
    const out = this.isOut(m.temp_c, m.setpoint_c);
    if (!out) v.excursionStart = null;
    else if (v.excursionStart === null) v.excursionStart = m.ts;
    // Keep a thinned history for the detail chart, but never drop a reading that changes
    // whether the vehicle is in band.
    const h = v.temps || (v.temps = newHistory());
    const lastOut = h.n ? this.isOut(h.temp[prev(h)], h.set[prev(h)]) : null;
    if (m.ts - v.tempKeptTs >= TEMP_EVERY_MS || out !== lastOut || m.door_open) {
      v.tempKeptTs = m.ts;
      h.ts[h.head] = m.ts;
      h.temp[h.head] = m.temp_c;
      h.set[h.head] = m.setpoint_c;
      h.door[h.head] = m.door_open ? 1 : 0;
      h.head = (h.head + 1) % TEMP_POINTS;
      h.n = Math.min(h.n + 1, TEMP_POINTS);
    }
  }

  noteStart(lat, lon) {
    // Cluster first positions: join the nearest depot within DEPOT_RADIUS_M, else start one.
    const cosLat = Math.cos((lat * Math.PI) / 180);
    let best = null;
    let bestD = DEPOT_RADIUS_M;
    for (const d of this.inferredDepots) {
      const dx = (lon - d.lon) * cosLat * 111320;
      const dy = (lat - d.lat) * 110540;
      const dist = Math.hypot(dx, dy);
      if (dist < bestD) (bestD = dist), (best = d);
    }
    if (best) {
      best.lat += (lat - best.lat) / (best.count + 1);
      best.lon += (lon - best.lon) / (best.count + 1);
      best.count++;
    } else {
      best = { lat, lon, count: 1 };
      this.inferredDepots.push(best);
    }
    [best.x, best.y] = project(best.lat, best.lon);
    this.inferredDepots.forEach((d, i) => (d.name = `Depot ${i + 1} (${d.count} start${d.count === 1 ? '' : 's'})`));
  }

  /** Settings changed: recompute excursion starts from the kept history. */
  setSettings(s) {
    this.settings = { ...this.settings, ...s };
    for (const v of this.vehicles.values()) {
      v.excursionStart = null;
      const h = v.temps;
      if (!h) continue;
      for (let j = h.n; j >= 1; j--) {
        const i = (h.head - j + TEMP_POINTS) % TEMP_POINTS;
        if (this.isOut(h.temp[i], h.set[i])) v.excursionStart ??= h.ts[i];
        else v.excursionStart = null;
      }
    }
    this.version++;
  }

  /** Online: last status is `online`, or data arrived after the last status and recently. */
  isOnline(v, now = Date.now()) {
    if (v.status === 'online') return true;
    return v.lastSeen > v.statusAt && now - v.lastSeen < this.settings.offlineAfterS * 1000;
  }

  /** Milliseconds of reading time the vehicle has been out of band, or 0. */
  excursionMs(v) {
    return v.excursionStart === null ? 0 : v.reeferTs - v.excursionStart;
  }

  hasExcursion(v) {
    const delayS = this.rules ? this.rules.alarm_after_s : this.settings.excursionDelayS;
    return v.excursionStart !== null && this.excursionMs(v) >= delayS * 1000;
  }

  /** The allowed band `[low, high]` °C of a unit set to `setpoint`. */
  band(setpoint) {
    const r = this.rules;
    if (!r) return [setpoint - this.settings.bandC, setpoint + this.settings.bandC];
    const b = setpoint < r.frozen_below_c ? r.frozen : r.chilled;
    return [b.low_c, b.high_c];
  }

  isOut(temp, setpoint) {
    const [low, high] = this.band(setpoint);
    return temp < low || temp > high;
  }

  /**
   * A dispatcher acknowledged vehicle `id`'s alarm (retained, so every open page, and any page
   * opened later, shares it): `{kind, since, by, at}`. It holds for that alarm only: `since`
   * names the episode (see `alarmSince`), so a new excursion or outage alarms afresh.
   */
  handleAck(id, text) {
    if (text.trim() === '') {
      this.acks.delete(id);
    } else {
      let a;
      try {
        a = JSON.parse(text);
      } catch (_) {
        return this.reject(`${ACK_PREFIX}${id}`, 'not JSON');
      }
      if (!a || typeof a.kind !== 'string' || !isNum(a.since)) return this.reject(`${ACK_PREFIX}${id}`, 'expected {kind, since}');
      this.acks.set(id, { kind: a.kind, since: a.since, by: String(a.by ?? ''), at: isNum(a.at) ? a.at : 0 });
    }
    this.version++;
  }

  /**
   * What names one alarm of vehicle `v` the same on every page: an excursion's first reading
   * out of band, or for an outage the time of the last reading the vehicle sent (0 if none).
   */
  alarmSince(kind, v) {
    if (kind === 'excursion') return v.excursionStart;
    return Math.max(v.gpsTs, v.reeferTs, 0);
  }

  /** The acknowledgement that covers `alarm`, if any. */
  ackOf(alarm) {
    const a = this.acks.get(alarm.id);
    return a && a.kind === alarm.kind && a.since === alarm.since ? a : null;
  }

  /** The simulator's map (retained GeoJSON): streets and customers to draw, depots to show. */
  handleWorld(text) {
    if (text.trim() === '') {
      this.world = null;
      this.version++;
      return;
    }
    let geo;
    try {
      geo = JSON.parse(text);
    } catch (_) {
      return this.reject(WORLD_TOPIC, 'not JSON');
    }
    if (!geo || !Array.isArray(geo.features)) return this.reject(WORLD_TOPIC, 'not a GeoJSON FeatureCollection');
    const world = { roads: [], customers: [], depots: [] };
    const lonLat = (c) => Array.isArray(c) && isNum(c[0]) && isNum(c[1]) && Math.abs(c[1]) <= 90 && Math.abs(c[0]) <= 180;
    for (const f of geo.features) {
      const g = f && f.geometry;
      if (!g) continue;
      if (g.type === 'LineString' && Array.isArray(g.coordinates)) {
        const pts = g.coordinates.filter(lonLat);
        if (pts.length < 2) continue;
        const line = new Float64Array(pts.length * 2);
        pts.forEach(([lon, lat], i) => ([line[2 * i], line[2 * i + 1]] = project(lat, lon)));
        world.roads.push(line);
      } else if (g.type === 'Point' || g.type === 'MultiPoint') {
        const points = g.type === 'Point' ? [g.coordinates] : Array.isArray(g.coordinates) ? g.coordinates : [];
        const name = String(f.properties?.name ?? '');
        for (const c of points.filter(lonLat)) {
          const [lon, lat] = c;
          const [x, y] = project(lat, lon);
          (f.properties?.kind === 'depot' ? world.depots : world.customers).push({ lat, lon, x, y, name });
        }
      }
    }
    this.world = world;
    this.version++;
  }

  /** The broker's cold-chain rules (retained): they replace the page's own band and delay. */
  handleRules(text) {
    if (text === '') return this.setRules(null);
    let r;
    try {
      r = JSON.parse(text);
    } catch (_) {
      return this.reject(RULES_TOPIC, 'not JSON');
    }
    const band = (b) => b && isNum(b.low_c) && isNum(b.high_c) && b.low_c < b.high_c;
    if (!r || !isNum(r.frozen_below_c) || !band(r.chilled) || !band(r.frozen) || !isNum(r.alarm_after_s))
      return this.reject(RULES_TOPIC, 'not cold-chain rules');
    this.setRules(r);
  }

  setRules(r) {
    this.rules = r;
    this.setSettings({}); // excursions judged again by the new band
  }

  /** Receipt-time silence: ms since the last data (or since first heard of, if none yet). */
  silentMs(v, now = Date.now()) {
    return now - Math.max(v.lastSeen, v.firstSeen);
  }

  /** The vehicle's display state: excursion | offline | silent | moving | stopped. */
  state(v, now = Date.now()) {
    if (this.hasExcursion(v)) return 'excursion';
    if (!this.isOnline(v, now)) return 'offline';
    if (this.silentMs(v, now) > this.settings.offlineAfterS * 1000) return 'silent';
    return v.speed >= 3 ? 'moving' : 'stopped';
  }

  onlineCount(now = Date.now()) {
    let n = 0;
    for (const v of this.vehicles.values()) if (this.isOnline(v, now)) n++;
    return n;
  }

  /** Active alarms, excursions first (longest first), then offline/silent (most recent first). */
  alarms(now = Date.now()) {
    const exc = [];
    const off = [];
    const offlineMs = this.settings.offlineAfterS * 1000;
    for (const v of this.vehicles.values()) {
      const since = (kind) => this.alarmSince(kind, v);
      if (this.hasExcursion(v)) exc.push({ kind: 'excursion', id: v.id, since: since('excursion'), ms: this.excursionMs(v), temp: v.temp, setpoint: v.setpoint });
      if (!this.isOnline(v, now)) off.push({ kind: 'offline', id: v.id, since: since('offline'), ms: now - Math.max(v.statusAt, v.lastSeen), explicit: v.status === 'offline' });
      else if (this.silentMs(v, now) > offlineMs) off.push({ kind: 'silent', id: v.id, since: since('silent'), ms: this.silentMs(v, now) });
    }
    exc.sort((a, b) => b.ms - a.ms);
    off.sort((a, b) => a.ms - b.ms);
    // Unacknowledged alarms first; acknowledged ones keep their order below them.
    const all = exc.concat(off);
    for (const a of all) a.ack = this.ackOf(a);
    return all.filter((a) => !a.ack).concat(all.filter((a) => a.ack));
  }

  /** Projected extent of known positions and depots, or null. */
  extent() {
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    const add = (x, y) => {
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    };
    for (const v of this.vehicles.values()) if (v.x !== undefined) add(v.x, v.y);
    for (const d of this.depots) add(d.x, d.y);
    return minX === Infinity ? null : { minX, minY, maxX, maxY };
  }
}

function newHistory() {
  return {
    ts: new Float64Array(TEMP_POINTS),
    temp: new Float32Array(TEMP_POINTS),
    set: new Float32Array(TEMP_POINTS),
    door: new Uint8Array(TEMP_POINTS),
    n: 0,
    head: 0,
  };
}

const prev = (h) => (h.head - 1 + TEMP_POINTS) % TEMP_POINTS;

/** The kept temperature history of `v`, oldest first, as `{ts, temp, set, door}` rows. */
export function tempHistory(v) {
  const h = v.temps;
  if (!h) return [];
  const rows = [];
  for (let j = h.n; j >= 1; j--) {
    const i = (h.head - j + TEMP_POINTS) % TEMP_POINTS;
    rows.push({ ts: h.ts[i], temp: h.temp[i], set: h.set[i], door: h.door[i] === 1 });
  }
  return rows;
}
