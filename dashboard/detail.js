// The detail panel of the selected vehicle: its latest readings and a chart of its recent
// reefer temperature against the setpoint band.

import { tempHistory } from './fleet.js';
import { ago } from './list.js';

const fmt = (x, d, unit = '') => (x === undefined ? '—' : `${x.toFixed(d)}${unit}`);
const yesNo = (b) => (b === undefined ? '—' : b ? 'yes' : 'no');
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const clock = (ts) => new Date(ts).toISOString().slice(11, 19);

export class DetailPanel {
  constructor(root, { fleet, onClose }) {
    this.root = root;
    this.fleet = fleet;
    this.title = root.querySelector('#detail-title');
    this.fields = root.querySelector('#detail-fields');
    this.canvas = root.querySelector('#temp-chart');
    root.querySelector('#detail-close').addEventListener('click', onClose);
  }

  render(v, now = Date.now()) {
    this.root.hidden = !v;
    if (!v) return;
    const f = this.fleet;
    const s = f.state(v, now);
    this.title.innerHTML = `${esc(v.id)} <span class="pill ${s}">${s === 'silent' ? 'no data' : s}</span>`;
    const rows = [
      ['Position', v.lat === undefined ? '—' : `${v.lat.toFixed(5)}, ${v.lon.toFixed(5)}`],
      ['Speed', fmt(v.speed, 0, ' km/h')],
      ['Heading', fmt(v.heading, 0, '°')],
      ['Odometer', fmt(v.odometer, 1, ' km')],
      ['Reefer', v.temp === undefined ? '—' : `${v.temp.toFixed(1)} °C (setpoint ${v.setpoint.toFixed(1)} °C)`],
      ['Ambient', fmt(v.ambient, 1, ' °C')],
      ['Door open', yesNo(v.door)],
      ['Compressor', v.compressor === undefined ? '—' : v.compressor ? 'on' : 'off'],
      ['Status', `${v.status || 'unknown'}${v.lastSeen ? `, data ${ago(now - v.lastSeen)} ago` : ', no data yet'}`],
      ['Last reading', Number.isFinite(v.reeferTs) || Number.isFinite(v.gpsTs) ? clock(Math.max(v.reeferTs, v.gpsTs)) + ' UTC' : '—'],
    ];
    if (f.hasExcursion(v)) rows.push(['Excursion', `for ${ago(f.excursionMs(v))}`]);
    this.fields.innerHTML = rows.map(([k, val]) => `<dt>${k}</dt><dd>${esc(val)}</dd>`).join('');
    this.drawChart(v);
  }

  drawChart(v) {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
    if (c.height !== Math.round(h * dpr)) c.height = Math.round(h * dpr);
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    const data = tempHistory(v);
    if (data.length === 0) {
      ctx.fillStyle = '#6b7280';
      ctx.fillText('No reefer readings yet', 10, h / 2);
      return;
    }
    const bandOf = (set) => this.fleet.band(set);
    const L = 38;
    const R = 8;
    const T = 16;
    const B = 20;
    let lo = Infinity;
    let hi = -Infinity;
    for (const d of data) {
      const [low, high] = bandOf(d.set);
      lo = Math.min(lo, d.temp, low);
      hi = Math.max(hi, d.temp, high);
    }
    lo = Math.floor(lo - 0.5);
    hi = Math.ceil(hi + 0.5);
    const t0 = data[0].ts;
    const t1 = Math.max(data[data.length - 1].ts, t0 + 1);
    const X = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
    const Y = (c) => T + ((hi - c) / (hi - lo)) * (h - T - B);

    // The allowed band, following the setpoint.
    ctx.fillStyle = 'rgba(15, 138, 95, 0.12)';
    ctx.beginPath();
    data.forEach((d, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(d.ts), Y(bandOf(d.set)[1])));
    for (let i = data.length - 1; i >= 0; i--) ctx.lineTo(X(data[i].ts), Y(bandOf(data[i].set)[0]));
    ctx.fill();

    // Y axis: whole degrees, about every 25 px.
    const step = Math.max(1, Math.ceil((hi - lo) / ((h - T - B) / 25)));
    ctx.strokeStyle = '#e5e7eb';
    ctx.fillStyle = '#4b5563';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    for (let c = Math.ceil(lo / step) * step; c <= hi; c += step) {
      ctx.beginPath();
      ctx.moveTo(L, Math.round(Y(c)) + 0.5);
      ctx.lineTo(w - R, Math.round(Y(c)) + 0.5);
      ctx.stroke();
      ctx.fillText(`${c}°`, L - 4, Y(c) + 4);
    }
    ctx.textAlign = 'left';
    ctx.fillText('°C', 4, 11);
    ctx.textAlign = 'right';
    ctx.fillText(`${clock(t1)} UTC`, w - R, h - 5);
    ctx.textAlign = 'left';
    ctx.fillText(clock(t0), L, h - 5);

    // Setpoint, dashed.
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = '#0f8a5f';
    ctx.beginPath();
    data.forEach((d, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(d.ts), Y(d.set)));
    ctx.stroke();
    ctx.setLineDash([]);

    // Door openings as orange ticks on the time axis.
    ctx.fillStyle = '#e08e0b';
    for (const d of data) if (d.door) ctx.fillRect(X(d.ts) - 1, h - B - 5, 2, 5);

    // Temperature; readings out of band in red.
    ctx.strokeStyle = '#1f6feb';
    ctx.lineWidth = 2;
    ctx.beginPath();
    data.forEach((d, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(d.ts), Y(d.temp)));
    ctx.stroke();
    ctx.fillStyle = '#d7263d';
    for (const d of data) {
      if (this.fleet.isOut(d.temp, d.set)) {
        ctx.beginPath();
        ctx.arc(X(d.ts), Y(d.temp), 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
}
