// The live map: Web Mercator projection onto a canvas, no tiles. Vehicles are stored with their
// projected coordinates (x = longitude in radians, y = Mercator northing in radians), so a frame
// only applies a linear view transform. Markers are batched into one path per colour, so 5000
// vehicles cost a handful of fill calls.

const DEG = Math.PI / 180;
const EARTH_R = 6378137;
const MAX_LAT = 85.05112878;

/** Projects WGS84 degrees to Web Mercator world units (radians). */
export function project(lat, lon) {
  const phi = Math.max(-MAX_LAT, Math.min(MAX_LAT, lat)) * DEG;
  return [lon * DEG, Math.log(Math.tan(Math.PI / 4 + phi / 2))];
}

/** Inverse of `project`: world units to `[lat, lon]` degrees. */
export function unproject(x, y) {
  return [(2 * Math.atan(Math.exp(y)) - Math.PI / 2) / DEG, x / DEG];
}

/** Colours per vehicle state; the legend in index.html uses the same ones (style.css). */
export const COLORS = {
  excursion: '#d7263d',
  offline: '#6b7280',
  silent: '#e08e0b',
  moving: '#1f6feb',
  stopped: '#0f8a5f',
};
const ORDER = ['stopped', 'moving', 'silent', 'offline', 'excursion']; // alarms drawn on top

const NICE = [1, 2, 5];
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const n of NICE) if (n * p >= raw) return n * p;
  return 10 * p;
}

export class MapView {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{onSelect?: (id: string|null) => void, onViewChange?: () => void}} opts
   */
  constructor(canvas, { onSelect = () => {}, onViewChange = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.onSelect = onSelect;
    this.onViewChange = onViewChange;
    this.cx = 0;
    this.cy = 0;
    this.scale = 0; // pixels per world unit; 0 until the first fit
    this.autoFit = true;
    this.dirty = true;
    this.w = 0;
    this.h = 0;
    this.trailBudget = 60000; // total trail points drawn per frame
    this.resize();
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.bindInput();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const r = this.canvas.getBoundingClientRect();
    this.w = Math.max(1, r.width);
    this.h = Math.max(1, r.height);
    this.canvas.width = Math.round(this.w * dpr);
    this.canvas.height = Math.round(this.h * dpr);
    this.dpr = dpr;
    this.dirty = true;
  }

  toScreen(x, y) {
    return [(x - this.cx) * this.scale + this.w / 2, (this.cy - y) * this.scale + this.h / 2];
  }

  toWorld(sx, sy) {
    return [(sx - this.w / 2) / this.scale + this.cx, this.cy - (sy - this.h / 2) / this.scale];
  }

  /** Fits the view to a world-unit extent `{minX, minY, maxX, maxY}` with a margin. */
  fit(ext, margin = 40) {
    // At least ~2 km across, so a single vehicle does not zoom to the pavement.
    const minSpan = 2000 / EARTH_R;
    const spanX = Math.max(ext.maxX - ext.minX, minSpan);
    const spanY = Math.max(ext.maxY - ext.minY, minSpan);
    this.cx = (ext.minX + ext.maxX) / 2;
    this.cy = (ext.minY + ext.maxY) / 2;
    this.scale = Math.min((this.w - 2 * margin) / spanX, (this.h - 2 * margin) / spanY);
    this.dirty = true;
  }

  /** Refits when auto-fit is on and the extent left the view or shrank to a small part of it. */
  maybeFit(ext) {
    if (!this.autoFit || !ext) return;
    if (!this.scale) return this.fit(ext);
    const [x0, y1] = this.toWorld(20, 20);
    const [x1, y0] = this.toWorld(this.w - 20, this.h - 20);
    const outside = ext.minX < x0 || ext.maxX > x1 || ext.minY < y0 || ext.maxY > y1;
    const fill = Math.max((ext.maxX - ext.minX) / (x1 - x0), (ext.maxY - ext.minY) / (y1 - y0));
    if (outside || fill < 0.5) this.fit(ext);
  }

  bindInput() {
    const c = this.canvas;
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
    for (const v of this.vehicles ? this.vehicles.values() : []) {
      if (v.x === undefined) continue;
      const [px, py] = this.toScreen(v.x, v.y);
      const d = (px - sx) ** 2 + (py - sy) ** 2;
      if (d < bestD) (bestD = d), (best = v.id);
    }
    return best;
  }

  /**
   * Draws one frame. `vehicles` is the Map of vehicle records, `stateOf(v)` their colour key,
   * `depots` a list of `{x, y, name}`. Returns the time spent in milliseconds.
   */
  draw(vehicles, stateOf, depots, selected) {
    const t0 = performance.now();
    this.vehicles = vehicles;
    const { ctx, w, h } = this;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#f4f6f8';
    ctx.fillRect(0, 0, w, h);
    this.dirty = false;
    if (!this.scale) {
      ctx.fillStyle = '#4b5563';
      ctx.font = '15px system-ui, sans-serif';
      ctx.textAlign = 'center';
      ctx.fillText('Waiting for vehicle positions…', w / 2, h / 2);
      ctx.textAlign = 'left';
      return performance.now() - t0;
    }
    this.drawGraticule();

    const k = this.scale;
    const ox = w / 2 - this.cx * k;
    const oy = h / 2 + this.cy * k;
    let count = 0;
    for (const v of vehicles.values()) if (v.x !== undefined) count++;

    // Trails: one path for all, each vehicle's share of a fixed budget of points.
    const perVehicle = Math.max(2, Math.floor(this.trailBudget / Math.max(1, count)));
    ctx.beginPath();
    for (const v of vehicles.values()) {
      if (v.trailLen < 2 || v.id === selected) continue;
      traceTrail(ctx, v, Math.min(v.trailLen, perVehicle), k, ox, oy);
    }
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = 'rgba(31, 111, 235, 0.28)';
    ctx.stroke();

    this.drawDepots(depots, k, ox, oy);

    // Markers: one path per state. Moving vehicles are arrows along their heading; stopped
    // ones (heading meaningless) are dots.
    const paths = {};
    for (const s of ORDER) paths[s] = new Path2D();
    const visible = [];
    const r = count > 1500 ? 4 : 5.5;
    for (const v of vehicles.values()) {
      if (v.x === undefined) continue;
      const sx = v.x * k + ox;
      const sy = oy - v.y * k;
      if (sx < -10 || sy < -10 || sx > w + 10 || sy > h + 10) continue;
      const s = stateOf(v);
      const p = paths[s];
      if (v.speed >= 3) {
        const a = (v.heading || 0) * (Math.PI / 180);
        const dx = Math.sin(a);
        const dy = -Math.cos(a);
        p.moveTo(sx + dx * r * 1.7, sy + dy * r * 1.7);
        p.lineTo(sx - dx * r + dy * r, sy - dy * r - dx * r);
        p.lineTo(sx - dx * r * 0.4, sy - dy * r * 0.4);
        p.lineTo(sx - dx * r - dy * r, sy - dy * r + dx * r);
        p.closePath();
      } else {
        p.moveTo(sx + r * 0.85, sy);
        p.arc(sx, sy, r * 0.85, 0, 2 * Math.PI);
      }
      if (visible.length <= 40) visible.push([v, sx, sy]);
    }
    ctx.lineWidth = 1;
    ctx.strokeStyle = 'rgba(255,255,255,0.9)';
    for (const s of ORDER) {
      ctx.fillStyle = COLORS[s];
      ctx.fill(paths[s]);
      if (count <= 1500) ctx.stroke(paths[s]);
    }

    ctx.font = '12px system-ui, sans-serif';
    if (visible.length <= 40) {
      for (const [v, sx, sy] of visible) label(ctx, v.id, sx + 9, sy + 4);
    }
    if (selected) this.drawSelected(vehicles, selected, k, ox, oy);
    this.drawScaleBar();
    return performance.now() - t0;
  }

  drawSelected(vehicles, id, k, ox, oy) {
    const v = vehicles.get(id);
    if (!v || v.x === undefined) return;
    const { ctx } = this;
    if (v.trailLen >= 2) {
      ctx.beginPath();
      traceTrail(ctx, v, v.trailLen, k, ox, oy);
      ctx.lineWidth = 3;
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

  drawDepots(depots, k, ox, oy) {
    const { ctx } = this;
    ctx.font = 'bold 12px system-ui, sans-serif';
    for (const d of depots) {
      const sx = d.x * k + ox;
      const sy = oy - d.y * k;
      ctx.fillStyle = '#7c3aed';
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
      label(ctx, d.name, sx + 11, sy - 6, '#5b21b6');
    }
  }

  drawGraticule() {
    const { ctx, w, h } = this;
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
    for (let lon = Math.ceil(lon0 / stepLon) * stepLon; lon <= lon1; lon += stepLon) {
      const [sx] = this.toScreen(...project(0, lon));
      ctx.moveTo(Math.round(sx) + 0.5, 0);
      ctx.lineTo(Math.round(sx) + 0.5, h);
      ctx.fillText(`${Math.abs(lon).toFixed(decimals(stepLon))}°${lon < 0 ? 'W' : 'E'}`, sx + 3, h - 6);
    }
    for (let lat = Math.ceil(lat0 / stepLat) * stepLat; lat <= lat1; lat += stepLat) {
      const [, sy] = this.toScreen(...project(lat, 0));
      ctx.moveTo(0, Math.round(sy) + 0.5);
      ctx.lineTo(w, Math.round(sy) + 0.5);
      ctx.fillText(`${Math.abs(lat).toFixed(decimals(stepLat))}°${lat < 0 ? 'S' : 'N'}`, 4, sy - 3);
    }
    ctx.stroke();
  }

  drawScaleBar() {
    const { ctx, w, h } = this;
    // Metres per pixel at the view's centre latitude (Mercator stretches by 1/cos(lat)).
    const [lat] = unproject(this.cx, this.cy);
    const mpp = (EARTH_R * Math.cos(lat * DEG)) / this.scale;
    const metres = niceStep(mpp * 120);
    const px = metres / mpp;
    const x = w - px - 24;
    const y = h - 22;
    ctx.fillStyle = 'rgba(255,255,255,0.85)';
    ctx.fillRect(x - 8, y - 20, px + 16, 30);
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
