// The dispatch page: wires the MQTT client to the fleet state, and the state to the map, list,
// alarms and detail panel. Messages only update the state; the map is drawn at most once per
// animation frame, and the list, alarms and counters refresh four times per second.
//
// Query parameters: `mqtt=ws://host:port/path` (default: ws(s)://{this host}/mqtt),
// `band=°C`, `delay=s`, `offline=s` (alarm settings; also editable on the page and remembered).

import { MqttClient } from './mqtt.js';
import { MapView } from './map.js';
import { Fleet, DEFAULT_SETTINGS, RULES_TOPIC, WORLD_TOPIC, ACK_PREFIX } from './fleet.js';
import { VehicleList, ago } from './list.js';
import { DetailPanel } from './detail.js';

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const params = new URLSearchParams(location.search);
const SUBSCRIPTIONS = [
  ['fleet/+/gps', 1],
  ['fleet/+/reefer', 1],
  ['fleet/+/status', 1],
  ['fleet/_depots', 1],
  [RULES_TOPIC, 1],
  [WORLD_TOPIC, 1],
  [`${ACK_PREFIX}+`, 1],
];
const SETTING_INPUTS = { bandC: ['set-band', 'band'], excursionDelayS: ['set-delay', 'delay'], offlineAfterS: ['set-offline', 'offline'] };

/** A fixed-size ring of samples with a percentile summary, for the frame-time report. */
class Ring {
  constructor(n) {
    this.buf = new Float64Array(n);
    this.n = 0;
  }
  push(x) {
    this.buf[this.n++ % this.buf.length] = x;
  }
  summary() {
    const a = Array.from(this.buf.subarray(0, Math.min(this.n, this.buf.length))).sort((x, y) => x - y);
    if (!a.length) return { n: 0 };
    const q = (p) => +a[Math.min(a.length - 1, Math.floor(p * a.length))].toFixed(2);
    return { n: a.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: +a[a.length - 1].toFixed(2), mean: +(a.reduce((s, x) => s + x, 0) / a.length).toFixed(2) };
  }
}

function loadSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem('fleetmq.settings') || '{}');
  } catch (_) {
    /* ignore a corrupt entry */
  }
  const s = { ...DEFAULT_SETTINGS, ...saved };
  for (const [key, [, param]] of Object.entries(SETTING_INPUTS)) {
    const x = parseFloat(params.get(param));
    if (Number.isFinite(x) && x >= 0) s[key] = x;
  }
  return s;
}

const fleet = new Fleet(loadSettings());
const perf = newPerf();
function newPerf() {
  const p = { frame: new Ring(600), list: new Ring(120), handleMs: 0, handleRing: new Ring(60) };
  for (const k of ['draw', 'base', 'markers', 'overlay']) p[k] = new Ring(600);
  return p;
}
let selected = null;

function select(id) {
  selected = id && fleet.vehicles.has(id) ? id : null;
  list.selected = selected;
  map.dirty = true;
  list.renderRows();
  detail.render(selected && fleet.vehicles.get(selected));
}

const map = new MapView($('map'), { onSelect: select, onViewChange: () => updateFitButton() });
const list = new VehicleList($('list-scroll'), $('vehicle-list'), { fleet, onSelect: select });
const detail = new DetailPanel($('detail'), { fleet, onClose: () => select(null) });

// --- Connection -------------------------------------------------------------------------------

const url = params.get('mqtt') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`;
let connState = 'connecting';
let everLive = false;
let lastError = '';
$('broker-url').textContent = url;

const client = new MqttClient(url, {
  subscriptions: SUBSCRIPTIONS,
  keepalive: 30,
  onMessage(topic, payload, m) {
    const t0 = performance.now();
    fleet.handle(topic, payload, m);
    perf.handleMs += performance.now() - t0;
  },
  onState(state, detail) {
    if (state === 'error') {
      lastError = detail;
      return;
    }
    if (state === 'refused') {
      showLogin(detail);
      return;
    }
    $('login').hidden = true;
    connState = state;
    if (state === 'subscribed') everLive = true;
    // Once live, losing the connection marks what is shown as possibly out of date.
    const stale = everLive && state !== 'subscribed';
    document.body.classList.toggle('stale', stale);
    $('banner').hidden = !stale;
    const el = $('conn');
    el.className = `conn ${state}`;
    el.textContent = {
      connecting: 'Connecting…',
      connected: 'Connected',
      subscribed: 'Live',
      waiting: `Reconnecting in ${Math.ceil(detail / 1000)} s`,
      closed: 'Closed',
    }[state];
    el.title = lastError ? `Last error: ${lastError}` : '';
  },
});
client.start();

/** The broker wants credentials (CONNACK 5) or refused the ones given (4): ask for them. */
function showLogin(code) {
  const form = $('login');
  const el = $('conn');
  el.className = 'conn closed';
  el.textContent = 'Login needed';
  $('login-error').textContent =
    code === 4 || client.credentials
      ? 'The broker refused this user name or password.'
      : 'The broker needs a user name and password.';
  form.hidden = false;
  $('login-user').focus();
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const password = $('login-password');
  client.login($('login-user').value, password.value);
  // Kept by the client for its reconnects only; not in the form, not in storage.
  password.value = '';
  $('login-error').textContent = 'Logging in…';
});

// --- Controls ----------------------------------------------------------------------------------

for (const [key, [id]] of Object.entries(SETTING_INPUTS)) {
  const input = $(id);
  input.value = fleet.settings[key];
  input.addEventListener('change', () => {
    const x = parseFloat(input.value);
    if (!Number.isFinite(x) || x < 0) return (input.value = fleet.settings[key]);
    fleet.setSettings({ [key]: x });
    try {
      localStorage.setItem('fleetmq.settings', JSON.stringify(fleet.settings));
    } catch (_) {
      /* private mode: settings last for this page only */
    }
  });
}
$('filter').addEventListener('input', (e) => {
  list.filter = e.target.value.trim();
  list.scroller.scrollTop = 0;
  list.render();
});
$('fit').addEventListener('click', () => {
  map.autoFit = true;
  map.scale = 0;
  lastFit = 0;
  updateFitButton();
});
$('alarms').addEventListener('click', (e) => {
  const li = e.target.closest('li[data-id]');
  if (!li) return;
  if (e.target.closest('button.ack')) {
    // Shared with every open page through the broker (retained), not kept here alone.
    const ack = { kind: li.dataset.kind, since: Number(li.dataset.since), by: client.credentials?.username || 'a dispatcher', at: Date.now() };
    if (!client.publish(`${ACK_PREFIX}${li.dataset.id}`, JSON.stringify(ack), { qos: 1, retain: true })) {
      e.target.title = 'Not connected: try again when the page is live';
    }
    return;
  }
  select(li.dataset.id);
});
addEventListener('keydown', (e) => {
  if (e.key === 'Escape') select(null);
});
function updateFitButton() {
  $('fit').textContent = map.autoFit ? 'Auto-fit: on' : 'Fit to fleet';
}

// --- Rendering ---------------------------------------------------------------------------------

function renderAlarms(now) {
  const alarms = fleet.alarms(now);
  const shown = alarms.slice(0, 100);
  const html = shown.map((a) => {
    const id = `<b>${esc(a.id)}</b>`;
    let text;
    if (a.kind === 'excursion') {
      const [low, high] = fleet.band(a.setpoint);
      const band = fleet.rules ? `band ${low}…${high}` : `setpoint ${a.setpoint.toFixed(1)} ±${fleet.settings.bandC}`;
      text = `<span class="tag">Excursion</span>${id} ${a.temp.toFixed(1)} °C, ${band} °C, out of band for ${ago(a.ms)}`;
    } else if (a.kind === 'offline') {
      text = `<span class="tag">Offline</span>${id} ${a.explicit ? 'disconnected' : 'no status, no data'} ${ago(a.ms)} ago`;
    } else {
      text = `<span class="tag">No data</span>${id} connected, silent for ${ago(a.ms)}`;
    }
    const ack = a.ack
      ? `<span class="acked-by">acknowledged by ${esc(a.ack.by)}</span>`
      : '<button type="button" class="ack" title="Acknowledge for every dispatcher">Ack</button>';
    const cls = `alarm ${a.kind}${a.ack ? ' acked' : ''}`;
    return `<li class="${cls}" data-id="${esc(a.id)}" data-kind="${a.kind}" data-since="${a.since}">${text} ${ack}</li>`;
  });
  if (alarms.length > shown.length) html.push(`<li class="more">and ${alarms.length - shown.length} more</li>`);
  if (!alarms.length) html.push('<li class="none">No active alarms</li>');
  $('alarms').innerHTML = html.join('');
  const open = alarms.filter((a) => !a.ack).length;
  $('alarm-count').textContent = open;
  $('alarm-count').className = open ? 'badge hot' : 'badge';
}

let lastFrame = 0;
let lastDraw = 0;
let drawnVersion = -1;
let lastFit = 0;
let lastSlow = 0;
let lastAlarms = 0;
let listedVersion = -1;
let lastList = 0;
let lastRate = { t: performance.now(), messages: 0 };

function slowUpdate(t, now) {
  $('vehicles-online').textContent = fleet.onlineCount(now);
  $('vehicles-total').textContent = fleet.vehicles.size;
  if (t - lastRate.t >= 1000) {
    const rate = ((fleet.messages - lastRate.messages) * 1000) / (t - lastRate.t);
    $('msg-rate').textContent = Math.round(rate).toLocaleString('en');
    perf.handleRing.push((perf.handleMs * 1000) / (t - lastRate.t));
    perf.handleMs = 0;
    lastRate = { t, messages: fleet.messages };
  }
  // The broker's cold-chain rules replace the page's own band and delay.
  for (const id of ['set-band', 'set-delay']) {
    $(id).disabled = Boolean(fleet.rules);
    $(id).title = fleet.rules ? 'Set by the broker ([coldchain] in its configuration)' : '';
  }
  $('rejects').hidden = fleet.rejected === 0;
  $('rejects').textContent = `${fleet.rejected} malformed message${fleet.rejected === 1 ? '' : 's'} ignored`;
  $('rejects').title = fleet.lastReject;
  // Ages change with time, so the list refreshes at least once a second even without news.
  if (fleet.version !== listedVersion || list.needsSort || t - lastList >= 1000) {
    lastList = t;
    const t0 = performance.now();
    list.render(now);
    perf.list.push(performance.now() - t0);
    listedVersion = fleet.version;
    $('list-count').textContent = `${list.rows.length.toLocaleString('en')} vehicle${list.rows.length === 1 ? '' : 's'}`;
  }
  if (t - lastAlarms >= 500) {
    lastAlarms = t;
    renderAlarms(now);
  }
  if (selected && !fleet.vehicles.has(selected)) select(null);
  if (selected) detail.render(fleet.vehicles.get(selected), now);
}

function frame(t) {
  requestAnimationFrame(frame);
  if (lastFrame) perf.frame.push(t - lastFrame);
  lastFrame = t;
  const now = Date.now();
  if (t - lastFit >= 1000 || !map.scale) {
    lastFit = t;
    map.maybeFit(fleet.extent());
  }
  // Draw when something changed or trails are being redrawn; at least once a second, so that
  // colours follow the offline timer.
  if (fleet.version !== drawnVersion || map.dirty || map.job || t - lastDraw >= 1000) {
    const stateOf = (v) => fleet.state(v, now);
    perf.draw.push(map.draw({ vehicles: fleet.vehicles, version: fleet.version, stateOf, depots: fleet.depots, selected, world: fleet.world }));
    if (map.timing) for (const k in map.timing) perf[k].push(map.timing[k]);
    drawnVersion = fleet.version;
    lastDraw = t;
  }
  if (t - lastSlow >= 250) {
    lastSlow = t;
    slowUpdate(t, now);
  }
}
requestAnimationFrame(frame);
updateFitButton();

// For tests and for looking inside from the console.
window.fleetDashboard = {
  fleet,
  client,
  map,
  list,
  select,
  get connState() {
    return connState;
  },
  perfStats() {
    return {
      vehicles: fleet.vehicles.size,
      drawMs: perf.draw.summary(),
      drawPartsMs: { baseAndTrails: perf.base.summary(), markers: perf.markers.summary(), overlay: perf.overlay.summary() },
      frameIntervalMs: perf.frame.summary(),
      listRenderMs: perf.list.summary(),
      messageHandlingMsPerSecond: perf.handleRing.summary(),
      messagesReceived: client.received,
    };
  },
  resetPerf() {
    Object.assign(perf, newPerf());
  },
};
