// The sortable vehicle list. Only the rows in view (plus a margin) exist in the DOM; spacer rows
// above and below keep the scrollbar true to the full list, so 5000 vehicles cost ~40 rows.

const ROW_H = 26; // must match `#vehicle-list tbody tr` in style.css
const OVERSCAN = 10;

const STATE_RANK = { excursion: 0, offline: 1, silent: 2, moving: 3, stopped: 4 };
const STATE_LABEL = { excursion: 'excursion', offline: 'offline', silent: 'no data', moving: 'moving', stopped: 'stopped' };

export function ago(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (x, d) => (x === undefined ? '—' : x.toFixed(d));

export class VehicleList {
  /**
   * @param {HTMLElement} scroller the scrolling container
   * @param {HTMLTableElement} table with a `<thead>` whose `th[data-key]` are sortable
   */
  constructor(scroller, table, { fleet, onSelect }) {
    this.scroller = scroller;
    this.table = table;
    this.tbody = table.tBodies[0];
    this.fleet = fleet;
    this.onSelect = onSelect;
    this.sortKey = 'state';
    this.sortDir = 1;
    this.filter = '';
    this.rows = [];
    this.selected = null;
    this.needsSort = true;
    table.tHead.addEventListener('click', (e) => {
      const th = e.target.closest('th[data-key]');
      if (!th) return;
      if (this.sortKey === th.dataset.key) this.sortDir = -this.sortDir;
      else (this.sortKey = th.dataset.key), (this.sortDir = 1);
      this.needsSort = true;
      this.render();
    });
    this.tbody.addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-id]');
      if (tr) this.onSelect(tr.dataset.id);
    });
    scroller.addEventListener('scroll', () => this.renderRows(), { passive: true });
  }

  key(v, now) {
    const f = this.fleet;
    switch (this.sortKey) {
      case 'id':
        return v.id;
      case 'speed':
        return v.x === undefined ? -1 : v.speed;
      case 'temp':
        // Sort by distance from setpoint: the warmest-relative-to-target loads first (descending).
        return v.temp === undefined ? -Infinity : v.temp - v.setpoint;
      case 'seen':
        return f.silentMs(v, now);
      default:
        return STATE_RANK[f.state(v, now)];
    }
  }

  /** Re-sorts and redraws. Called a few times per second, not per message. */
  render(now = Date.now()) {
    const q = this.filter.toLowerCase();
    const all = [];
    for (const v of this.fleet.vehicles.values()) if (!q || v.id.toLowerCase().includes(q)) all.push(v);
    const keys = new Map();
    for (const v of all) keys.set(v, this.key(v, now));
    const dir = this.sortDir;
    all.sort((a, b) => {
      const ka = keys.get(a);
      const kb = keys.get(b);
      if (ka < kb) return -dir;
      if (ka > kb) return dir;
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });
    this.rows = all;
    this.needsSort = false;
    for (const th of this.table.tHead.querySelectorAll('th[data-key]')) {
      const on = th.dataset.key === this.sortKey;
      th.setAttribute('aria-sort', on ? (dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    this.table.dataset.total = String(all.length);
    this.renderRows(now);
  }

  renderRows(now = Date.now()) {
    const f = this.fleet;
    const head = this.table.tHead.offsetHeight;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_H) - OVERSCAN);
    const count = Math.ceil((this.scroller.clientHeight - head) / ROW_H) + 2 * OVERSCAN;
    const last = Math.min(this.rows.length, first + count);
    let html = `<tr class="spacer" style="height:${first * ROW_H}px"></tr>`;
    for (let i = first; i < last; i++) {
      const v = this.rows[i];
      const s = f.state(v, now);
      const dev = v.temp === undefined ? '' : Math.abs(v.temp - v.setpoint) > f.settings.bandC ? ' out' : '';
      html +=
        `<tr data-id="${esc(v.id)}" class="${v.id === this.selected ? 'sel' : ''}">` +
        `<td class="id">${esc(v.id)}</td>` +
        `<td><span class="pill ${s}">${STATE_LABEL[s]}</span></td>` +
        `<td class="num">${v.x === undefined ? '—' : fmt(v.speed, 0)}</td>` +
        `<td class="num${dev}">${fmt(v.temp, 1)}<span class="set">${v.setpoint === undefined ? '' : ' / ' + fmt(v.setpoint, 0)}</span></td>` +
        `<td class="num">${v.lastSeen ? ago(now - v.lastSeen) : '—'}</td></tr>`;
    }
    html += `<tr class="spacer" style="height:${(this.rows.length - last) * ROW_H}px"></tr>`;
    this.tbody.innerHTML = html;
  }
}
