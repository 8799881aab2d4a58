// Vehicle markers as pre-rendered sprites: for each state colour, an arrow for each of 32
// headings and a dot for a stopped vehicle, drawn once with anti-aliasing and a white outline,
// then kept as lists of their non-transparent pixels. `blit` copies one into an RGBA pixel
// buffer (little-endian Uint32: A<<24 | B<<16 | G<<8 | R), blending the soft edges.

const BUCKETS = 32;
const DOT = BUCKETS;

export class Sprites {
  /** `colors`: one CSS colour per state index. */
  constructor(colors) {
    this.colors = colors;
    this.key = '';
    this.width = 0;
    this.sets = [];
  }

  /** The sprites for marker radius `size` (CSS px) at `dpr`, for a buffer `width` pixels wide. */
  get(size, dpr, width) {
    const key = `${size} ${dpr}`;
    if (key !== this.key) {
      this.key = key;
      this.width = 0;
      this.sets = this.colors.map((color) => render(color, size, dpr));
    }
    if (width !== this.width) {
      this.width = width;
      for (const set of this.sets) for (const s of set) s.off = Int32Array.from(s.dy, (dy, j) => dy * width + s.dx[j]);
    }
    return this;
  }

  /** Copies the sprite of state index `state` (heading in [0, 360) degrees, or < 0 for a dot) at (sx, sy). */
  blit(px, state, heading, sx, sy) {
    const s = this.sets[state][heading < 0 ? DOT : Math.round(heading / (360 / BUCKETS)) % BUCKETS];
    const W = this.width;
    const H = px.length / W;
    const xi = Math.round(sx);
    const yi = Math.round(sy);
    const { off, col, dx, dy, r } = s;
    const n = col.length;
    if (xi >= r && yi >= r && xi < W - r && yi < H - r) {
      const base = yi * W + xi;
      for (let j = 0; j < n; j++) blend(px, base + off[j], col[j]);
    } else {
      for (let j = 0; j < n; j++) {
        const x = xi + dx[j];
        const y = yi + dy[j];
        if (x >= 0 && y >= 0 && x < W && y < H) blend(px, y * W + x, col[j]);
      }
    }
  }
}

function blend(px, p, c) {
  const sa = c >>> 24;
  const d = px[p];
  const da = d >>> 24;
  if (sa === 255 || da === 0) {
    px[p] = c;
    return;
  }
  // "Source over" on straight (not premultiplied) colour, as ImageData holds it.
  const rest = (da * (255 - sa)) / 255;
  const oa = sa + rest;
  const k1 = sa / oa;
  const k2 = rest / oa;
  px[p] =
    ((c & 255) * k1 + (d & 255) * k2) |
    ((((c >>> 8) & 255) * k1 + ((d >>> 8) & 255) * k2) << 8) |
    ((((c >>> 16) & 255) * k1 + ((d >>> 16) & 255) * k2) << 16) |
    (Math.round(oa) << 24);
}

function render(color, size, dpr) {
  const S = Math.ceil((size * 2 + 6) * dpr);
  const c = document.createElement('canvas');
  c.width = c.height = S;
  const g = c.getContext('2d', { willReadFrequently: true });
  const out = [];
  for (let b = 0; b <= BUCKETS; b++) {
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, S, S);
    g.setTransform(dpr, 0, 0, dpr, S / 2, S / 2);
    g.beginPath();
    if (b === DOT) {
      g.arc(0, 0, size * 0.8, 0, 2 * Math.PI);
    } else {
      // An arrow pointing along the heading (0° = north, clockwise), with a notch at the back.
      const a = (b * 2 * Math.PI) / BUCKETS;
      const ux = Math.sin(a);
      const uy = -Math.cos(a);
      const r = size;
      g.moveTo(ux * r * 1.6, uy * r * 1.6);
      g.lineTo(-ux * r + uy * r, -uy * r - ux * r);
      g.lineTo(-ux * r * 0.35, -uy * r * 0.35);
      g.lineTo(-ux * r - uy * r, -uy * r + ux * r);
      g.closePath();
    }
    g.fillStyle = color;
    g.fill();
    g.lineWidth = 1;
    g.strokeStyle = 'rgba(255,255,255,0.95)';
    g.stroke();
    const data = g.getImageData(0, 0, S, S).data;
    const dx = [];
    const dy = [];
    const col = [];
    for (let i = 0; i < S * S; i++) {
      const a = data[4 * i + 3];
      if (!a) continue;
      dx.push((i % S) - (S >> 1));
      dy.push(Math.floor(i / S) - (S >> 1));
      col.push((data[4 * i] | (data[4 * i + 1] << 8) | (data[4 * i + 2] << 16) | (a << 24)) >>> 0);
    }
    out.push({ dx: Int16Array.from(dx), dy: Int16Array.from(dy), col: Uint32Array.from(col), off: null, r: S });
  }
  return out;
}
