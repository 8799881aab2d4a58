// The live map: Web Mercator projection onto canvases, no tiles. Vehicles carry their projected
// coordinates (x = longitude in radians, y = Mercator northing in radians), so a frame applies a
// linear view transform only.
//
// Two stacked canvases keep 5000 vehicles inside a frame budget, also where canvas is rasterized
// in software (as in headless Chromium):
// - base: background, graticule and trails. Trails change slowly, so for a large fleet they are
//   redrawn at most once a second, a few milliseconds per frame into a back buffer that is
//   swapped in when complete; one path with 5000 trails costs tens of milliseconds in software.
//   When the view moves, the last complete trails are moved with it until new ones are ready.
// - top: markers, then depots, labels and the selected vehicle. Markers are pre-rendered sprites
//   (per state and heading) copied into an ImageData by a plain loop, on a CPU-backed canvas: a
//   few milliseconds for 5000, where filling 5000 vector paths costs 9 (and one path holding them
//   all, 90).

import { Sprites } from './sprites.js';

const DEG = Math.PI / 180;
const EARTH_R = 6378137;
const MAX_LAT = 85.05112878;
const SYNC_TRAILS = 600; // fleets up to this size draw trails every frame, directly
const TRAIL_BUDGET_MS = 3; // per frame, for larger fleets
const TRAIL_POINTS = 60000; // total trail points drawn, shared out between vehicles
// Margins kept free when fitting: graticule labels on top and right, legend at the bottom.
const PAD = { l: 24, r: 70, t: 32, b: 78 };

/** Projects WGS84 degrees to Web Mercator world units (radians). */
export function project(lat, lon) {
  const phi = Math.max(-MAX_LAT, Math.min(MAX_LAT, lat)) * DEG;
  return [lon * DEG, Math.log(Math.tan(Math.PI / 4 + phi / 2))];
}

/** Inverse of `project`: world units to `[lat, lon]` degrees. */
export function unproject(x, y) {
  return [(2 * Math.atan(Math.exp(y)) - Math.PI / 2) / DEG, x / DEG];
}

/** Colours per vehicle state, in drawing order (alarms on top); style.css uses the same. */
export const COLORS = {
  stopped: '#0f8a5f',
  moving: '#1f6feb',
  silent: '#e08e0b',
  offline: '#6b7280',
  excursion: '#d7263d',
};

const STATES = Object.keys(COLORS);
const STATE_INDEX = Object.fromEntries(STATES.map((s, i) => [s, i]));

const NICE = [1, 2, 5];
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const n of NICE) if (n * p >= raw) return n * p;
  return 10 * p;
}

export class MapView {
  /**
   * @param {HTMLElement} root an element that the map fills (position: relative)
   * @param {{onSelect?: (id: string|null) => void, onViewChange?: () => void}} opts
   */
  constructor(root, { onSelect = () => {}, onViewChange = () => {} } = {}) {
    this.root = root;
    this.base = layer(root, { alpha: false });
    this.top = layer(root, { willReadFrequently: true });
    this.bctx = this.base.getContext('2d', { alpha: false });
    this.tctx = this.top.getContext('2d', { willReadFrequently: true });
    // Trails of large fleets: `trails` holds the last complete layer (drawn in `trailsView`),
    // `back` the one being drawn. CPU-backed, so a step is rasterized (and timed) at once.
    this.trails = document.createElement('canvas');
    this.trailsCtx = this.trails.getContext('2d', { willReadFrequently: true });
    this.back = document.createElement('canvas');
    this.backCtx = this.back.getContext('2d', { willReadFrequently: true });
    this.trailsView = null;
    this.sprites = new Sprites(Object.values(COLORS));
    this.onSelect = onSelect;
    this.onViewChange = onViewChange;
    this.cx = 0;
    this.cy = 0;
    this.scale = 0; // pixels per world unit; 0 until the first fit
    this.autoFit = true;
    this.dirty = true;
    this.baseKey = '';
    this.job = null;
    this.trailsAt = -Infinity;
    this.trailsVersion = -1;
    this.vehicles = new Map();
    this.timing = null; // milliseconds spent in the parts of the last frame
    this.resize();
    new ResizeObserver(() => this.resize()).observe(root);
    this.bindInput(this.top);
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const r = this.root.getBoundingClientRect();
    this.w = Math.max(1, r.width);
    this.h = Math.max(1, r.height);
    this.dpr = dpr;
    this.trailsView = null; // resizing clears the canvases
    this.job = null;
    for (const c of [this.base, this.top, this.back, this.trails]) {
      c.width = Math.round(this.w * dpr);
      c.height = Math.round(this.h * dpr);
    }
    this.image = this.tctx.createImageData(this.top.width, this.top.height);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.dirty = true;
  }

  toScreen(x, y) {
    return [(x - this.cx) * this.scale + this.w / 2, (this.cy - y) * this.scale + this.h / 2];
  }

  toWorld(sx, sy) {
    return [(sx - this.w / 2) / this.scale + this.cx, this.cy - (sy - this.h / 2) / this.scale];
  }

  /** Fits the view to a world-unit extent `{minX, minY, maxX, maxY}` inside the padded area. */
  fit(ext) {
    // At least ~2 km across, so a single vehicle does not zoom to the pavement.
    const minSpan = 2000 / EARTH_R;
    const spanX = Math.max(ext.maxX - ext.minX, minSpan);
    const spanY = Math.max(ext.maxY - ext.minY, minSpan);
    const { l, r, t, b } = PAD;
    this.scale = Math.max(1e-9, Math.min((this.w - l - r) / spanX, (this.h - t - b) / spanY));
    this.cx = (ext.minX + ext.maxX) / 2 - (l - r) / (2 * this.scale);
    this.cy = (ext.minY + ext.maxY) / 2 + (t - b) / (2 * this.scale);
    this.dirty = true;
  }

  /** Refits when auto-fit is on and the extent left the padded area or fills little of it. */
  maybeFit(ext) {
    if (!this.autoFit || !ext) return;
    if (!this.scale) return this.fit(ext);
    const [x0, y1] = this.toWorld(PAD.l - 8, PAD.t - 8);
    const [x1, y0] = this.toWorld(this.w - PAD.r + 8, this.h - PAD.b + 8);
    const outside = ext.minX < x0 || ext.maxX > x1 || ext.minY < y0 || ext.maxY > y1;
    const fill = Math.max((ext.maxX - ext.minX) / (x1 - x0), (ext.maxY - ext.minY) / (y1 - y0));
    if (outside || fill < 0.5) this.fit(ext);
  }

  bindInput(c) {
    let drag = null;
    c.addEventListener('pointerdown', (e) => {
      drag = { x: e.clientX, y: e.clientY, cx: this.cx, cy: this.cy, moved: false };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener('pointermove', (e) => {
      if (!drag || !this.scale) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (!drag.moved) return;
      this.autoFit = false;
      this.cx = drag.cx - dx / this.scale;
      this.cy = drag.cy + dy / this.scale;
      this.dirty = true;
      this.onViewChange();
    });
    c.addEventListener('pointerup', (e) => {
      if (drag && !drag.moved) {
        const r = c.getBoundingClientRect();
        this.onSelect(this.pick(e.clientX - r.left, e.clientY - r.top));
      }
      drag = null;
    });
    c.addEventListener(
      'wheel',
      (e) => {
        if (!this.scale) return;
        e.preventDefault();
        const r = c.getBoundingClientRect();
        const sx = e.clientX - r.left;
        const sy = e.clientY - r.top;
        const [wx, wy] = this.toWorld(sx, sy);
        this.scale *= Math.exp(-e.deltaY * 0.0015);
        // Keep the point under the cursor where it is.
        this.cx = wx - (sx - this.w / 2) / this.scale;
        this.cy = wy + (sy - this.h / 2) / this.scale;
        this.autoFit = false;
        this.dirty = true;
        this.onViewChange();
      },
      { passive: false },
    );
    c.addEventListener('dblclick', () => {
      this.autoFit = true;
      this.scale = 0;
      this.onViewChange();
    });
  }

  /** The id of the vehicle nearest to screen point (sx, sy) within 12 px, or null. */
  pick(sx, sy) {
    let best = null;
    let bestD = 144;
    for (const v of this.vehicles.values()) {
      if (v.x === undefined) continue;
      const [px, py] = this.toScreen(v.x, v.y);
      const d = (px - sx) ** 2 + (py - sy) ** 2;
      if (d < bestD) (bestD = d), (best = v.id);
    }
    return best;
  }

  /**
   * Draws one frame: `vehicles` is the Map of vehicle records, `version` changes whenever they
   * do, `stateOf(v)` gives a COLORS key, `depots` is a list of `{x, y, name}`. Returns the time
   * spent in milliseconds.
   */
  draw({ vehicles, version, stateOf, depots, selected, world = null }) {
    const t0 = performance.now();
    if (world !== this.world) {
      this.world = world;
      this.baseKey = ''; // the background changed: repaint it
    }
    this.vehicles = vehicles;
    this.dirty = false;
    const { tctx, w, h, dpr } = this;
    if (!this.scale) {
      this.paintBackground(this.bctx, false);
      tctx.setTransform(1, 0, 0, 1, 0, 0);
      tctx.clearRect(0, 0, this.top.width, this.top.height);
      tctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      tctx.fillStyle = '#4b5563';
      tctx.font = '15px system-ui, sans-serif';
      tctx.textAlign = 'center';
      tctx.fillText('Waiting for vehicle positions…', w / 2, h / 2);
      tctx.textAlign = 'left';
      this.baseKey = '';
      return performance.now() - t0;
    }
    let count = 0;
    for (const v of vehicles.values()) if (v.x !== undefined) count++;
    this.drawBase(vehicles, version, count, t0);
    const t1 = performance.now();

    // Markers, copied as sprites into the top layer's pixels.
    const k = this.scale * dpr;
    const ox = (w / 2 - this.cx * this.scale) * dpr;
    const oy = (h / 2 + this.cy * this.scale) * dpr;
    const size = count > 1500 ? 4 : 5.5;
    const sp = this.sprites.get(size, dpr, this.top.width);
    const px = this.pixels;
    px.fill(0);
    // Visible markers into preallocated arrays (no garbage per frame), then blitted state by
    // state so that alarms end up on top.
    const sc = this.scratch(count);
    const maxX = this.top.width + 20;
    const maxY = this.top.height + 20;
    let m = 0;
    for (const v of vehicles.values()) {
      if (v.x === undefined) continue;
      const sx = v.x * k + ox;
      const sy = oy - v.y * k;
      if (sx < -20 || sy < -20 || sx > maxX || sy > maxY) continue;
      sc.refs[m] = v;
      sc.x[m] = sx;
      sc.y[m] = sy;
      sc.heading[m] = v.speed >= 3 ? (((v.heading || 0) % 360) + 360) % 360 : -1; // -1: a dot
      sc.state[m] = STATE_INDEX[stateOf(v)];
      m++;
    }
    for (let s = 0; s < STATES.length; s++) {
      for (let i = 0; i < m; i++) if (sc.state[i] === s) sp.blit(px, s, sc.heading[i], sc.x[i], sc.y[i]);
    }
    tctx.putImageData(this.image, 0, 0);
    const t2 = performance.now();

    tctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.drawDepots(depots);
    tctx.font = '12px system-ui, sans-serif';
    if (m <= 40) for (let i = 0; i < m; i++) label(tctx, sc.refs[i].id, sc.x[i] / dpr + 9, sc.y[i] / dpr + 4);
    sc.refs.fill(null, 0, m);
    if (selected) this.drawSelected(vehicles.get(selected));
    this.drawScaleBar();
    const t3 = performance.now();
    this.timing = { base: t1 - t0, markers: t2 - t1, overlay: t3 - t2 };
    return t3 - t0;
  }

  scratch(n) {
    if (!this.sc || this.sc.x.length < n) {
      const cap = Math.max(64, n * 2);
      this.sc = { refs: new Array(cap).fill(null), x: new Float32Array(cap), y: new Float32Array(cap), heading: new Float32Array(cap), state: new Uint8Array(cap) };
    }
    return this.sc;
  }

  /** Keeps the base layer current: at once when the view changed, else trails now and then. */
  drawBase(vehicles, version, count, t0) {
    const key = `${this.cx} ${this.cy} ${this.scale} ${this.w} ${this.h}`;
    const viewChanged = key !== this.baseKey;
    this.baseKey = key;
    const stale = version !== this.trailsVersion;
    if (count <= SYNC_TRAILS) {
      if (viewChanged || (stale && t0 - this.trailsAt > 250)) {
        this.paintBackground(this.bctx, true);
        this.trailPass(this.bctx, [...vehicles.values()], 0, Infinity, count);
        this.trailsAt = t0;
        this.trailsVersion = version;
      }
      return;
    }
    if (viewChanged) {
      // Show the new view at once, with the last complete trails moved into it (scaled and
      // shifted: close enough for the few frames until the redrawn ones are ready).
      this.job = null;
      this.paintBase();
    }
    if (!this.job && (viewChanged || (stale && t0 - this.trailsAt > 1000))) {
      const ctx = this.backCtx;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.back.width, this.back.height);
      const view = { cx: this.cx, cy: this.cy, scale: this.scale };
      this.job = { ctx, list: [...vehicles.values()], i: 0, version, count, view };
    }
    if (this.job) {
      const job = this.job;
      job.i = this.trailPass(job.ctx, job.list, job.i, t0 + TRAIL_BUDGET_MS, job.count);
      if (job.i >= job.list.length) {
        // Swap the finished layer in; the old one becomes the next job's canvas.
        [this.trails, this.back] = [this.back, this.trails];
        [this.trailsCtx, this.backCtx] = [this.backCtx, this.trailsCtx];
        this.trailsView = job.view;
        this.paintBase();
        this.trailsAt = t0;
        this.trailsVersion = job.version;
        this.job = null;
      }
    }
  }

  /** Background, graticule, and the trails layer placed into the current view. */
  paintBase() {
    const ctx = this.bctx;
    this.paintBackground(ctx, true);
    const tv = this.trailsView;
    if (!tv) return;
    const f = this.scale / tv.scale;
    const { w, h, dpr } = this;
    ctx.setTransform(f, 0, 0, f, dpr * ((tv.cx - this.cx) * this.scale + (w / 2) * (1 - f)), dpr * ((this.cy - tv.cy) * this.scale + (h / 2) * (1 - f)));
    ctx.drawImage(this.trails, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  /** Strokes trails of `list` from index `i` until `deadline`; returns the next index. */
  trailPass(ctx, list, i, deadline, count) {
    const per = Math.max(2, Math.floor(TRAIL_POINTS / Math.max(1, count)));
    const k = this.scale;
    const ox = this.w / 2 - this.cx * k;
    const oy = this.h / 2 + this.cy * k;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    ctx.strokeStyle = 'rgba(31, 111, 235, 0.3)';
    while (i < list.length) {
      // Small batches: one path holding thousands of trails rasterizes far slower than many.
      ctx.beginPath();
      for (const end = Math.min(list.length, i + 32); i < end; i++) {
        const v = list[i];
        if (v.trailLen >= 2 && v.x !== undefined) traceTrail(ctx, v, Math.min(v.trailLen, per), k, ox, oy);
      }
      ctx.stroke();
      if (deadline === Infinity) continue;
      // Canvas defers drawing until it is needed; reading a pixel makes this batch's raster
      // happen now, inside the budget, instead of in one long frame at the swap.
      ctx.getImageData(0, 0, 1, 1);
      if (performance.now() > deadline) break;
    }
    return i;
  }

  paintBackground(ctx, grid) {
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#f4f6f8';
    ctx.fillRect(0, 0, this.w, this.h);
    if (grid) this.drawGraticule(ctx);
    if (grid && this.world) this.drawWorld(ctx);
  }

  /** The simulator's streets and customers, faint, under everything else. */
  drawWorld(ctx) {
    const k = this.scale;
    const ox = this.w / 2 - this.cx * k;
    const oy = this.h / 2 + this.cy * k;
    ctx.beginPath();
    for (const line of this.world.roads) {
      for (let i = 0; i < line.length; i += 2) {
        const x = line[i] * k + ox;
        const y = oy - line[i + 1] * k;
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
    }
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = '#d3d9e1';
    ctx.stroke();
    ctx.fillStyle = '#9aa3af';
    for (const c of this.world.customers) ctx.fillRect(c.x * k + ox - 2.5, oy - c.y * k - 2.5, 5, 5);
  }

  drawSelected(v) {
    if (!v || v.x === undefined) return;
    const { tctx: ctx } = this;
    const k = this.scale;
    const ox = this.w / 2 - this.cx * k;
    const oy = this.h / 2 + this.cy * k;
    if (v.trailLen >= 2) {
      ctx.beginPath();
      traceTrail(ctx, v, v.trailLen, k, ox, oy);
      ctx.lineWidth = 3;
      ctx.lineJoin = 'round';
      ctx.strokeStyle = 'rgba(17, 24, 39, 0.75)';
      ctx.stroke();
    }
    const sx = v.x * k + ox;
    const sy = oy - v.y * k;
    ctx.beginPath();
    ctx.arc(sx, sy, 11, 0, 2 * Math.PI);
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = '#111827';
    ctx.stroke();
    ctx.font = 'bold 13px system-ui, sans-serif';
    label(ctx, v.id, sx + 14, sy + 4);
  }

  drawDepots(depots) {
    const { tctx: ctx } = this;
    ctx.font = 'bold 13px system-ui, sans-serif';
    for (const d of depots) {
      const [sx, sy] = this.toScreen(d.x, d.y);
      ctx.fillStyle = COLORS_DEPOT;
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = 2;
      // A small house: square body with a roof.
      ctx.beginPath();
      ctx.moveTo(sx - 8, sy + 7);
      ctx.lineTo(sx - 8, sy - 2);
      ctx.lineTo(sx, sy - 9);
      ctx.lineTo(sx + 8, sy - 2);
      ctx.lineTo(sx + 8, sy + 7);
      ctx.closePath();
      ctx.stroke();
      ctx.fill();
      // Labels sit on a white plate below the house: legible over a dense fleet.
      const tw = ctx.measureText(d.name).width;
      ctx.fillStyle = 'rgba(255,255,255,0.88)';
      ctx.fillRect(sx - tw / 2 - 4, sy + 9, tw + 8, 18);
      ctx.fillStyle = '#4c1d95';
      ctx.textAlign = 'center';
      ctx.fillText(d.name, sx, sy + 23);
      ctx.textAlign = 'left';
    }
  }

  drawGraticule(ctx) {
    const { w, h } = this;
    const [lat0, lon0] = unproject(...this.toWorld(0, h));
    const [lat1, lon1] = unproject(...this.toWorld(w, 0));
    // Aim for grid lines about 120 px apart.
    const stepLon = niceStep(((lon1 - lon0) * 120) / w);
    const stepLat = niceStep(((lat1 - lat0) * 120) / h);
    const decimals = (s) => Math.max(0, -Math.floor(Math.log10(s)));
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#dde3ea';
    ctx.fillStyle = '#6b7280';
    ctx.font = '11px system-ui, sans-serif';
    ctx.beginPath();
    // Longitudes labelled along the top edge, latitudes along the right edge: the legend and
    // the scale bar sit at the bottom.
    for (let lon = Math.ceil(lon0 / stepLon) * stepLon; lon <= lon1; lon += stepLon) {
      const [sx] = this.toScreen(...project(0, lon));
      ctx.moveTo(Math.round(sx) + 0.5, 0);
      ctx.lineTo(Math.round(sx) + 0.5, h);
      ctx.fillText(`${Math.abs(lon).toFixed(decimals(stepLon))}°${lon < 0 ? 'W' : 'E'}`, sx + 3, 13);
    }
    ctx.textAlign = 'right';
    for (let lat = Math.ceil(lat0 / stepLat) * stepLat; lat <= lat1; lat += stepLat) {
      const [, sy] = this.toScreen(...project(lat, 0));
      ctx.moveTo(0, Math.round(sy) + 0.5);
      ctx.lineTo(w, Math.round(sy) + 0.5);
      ctx.fillText(`${Math.abs(lat).toFixed(decimals(stepLat))}°${lat < 0 ? 'S' : 'N'}`, w - 4, sy - 3);
    }
    ctx.textAlign = 'left';
    ctx.stroke();
  }

  drawScaleBar() {
    const { tctx: ctx, w, h } = this;
    // Metres per pixel at the view's centre latitude (Mercator stretches by 1/cos(lat)).
    const [lat] = unproject(this.cx, this.cy);
    const mpp = (EARTH_R * Math.cos(lat * DEG)) / this.scale;
    const metres = niceStep(mpp * 120);
    const px = metres / mpp;
    const x = w - px - 24;
    const y = h - 16;
    ctx.fillStyle = 'rgba(255,255,255,0.85)';
    ctx.fillRect(x - 8, y - 20, px + 16, 28);
    ctx.strokeStyle = '#111827';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x, y - 5);
    ctx.lineTo(x, y);
    ctx.lineTo(x + px, y);
    ctx.lineTo(x + px, y - 5);
    ctx.stroke();
    ctx.fillStyle = '#111827';
    ctx.font = '12px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.fillText(metres >= 1000 ? `${metres / 1000} km` : `${metres} m`, x + px / 2, y - 8);
    ctx.textAlign = 'left';
  }
}

const COLORS_DEPOT = '#7c3aed';

function layer(root, opts) {
  const c = document.createElement('canvas');
  c.style.cssText = 'position:absolute;inset:0;width:100%;height:100%;display:block';
  root.appendChild(c);
  c.getContext('2d', opts);
  return c;
}

function traceTrail(ctx, v, n, k, ox, oy) {
  // The trail is a ring buffer of projected points; draw its newest `n`, ending at the vehicle.
  const cap = v.trail.length / 2;
  let i = (v.trailHead - n + cap) % cap;
  ctx.moveTo(v.trail[2 * i] * k + ox, oy - v.trail[2 * i + 1] * k);
  for (let j = 1; j < n; j++) {
    i = (i + 1) % cap;
    ctx.lineTo(v.trail[2 * i] * k + ox, oy - v.trail[2 * i + 1] * k);
  }
  ctx.lineTo(v.x * k + ox, oy - v.y * k);
}

function label(ctx, text, x, y, color = '#111827') {
  ctx.lineWidth = 3;
  ctx.strokeStyle = 'rgba(255,255,255,0.9)';
  ctx.strokeText(text, x, y);
  ctx.fillStyle = color;
  ctx.fillText(text, x, y);
}
