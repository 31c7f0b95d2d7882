/**
 * Static SVG charts for the bench report: drawn here, as text, so the page shows them without running a script.
 * Every chart names its axis and says when it is on a log scale; tick labels are round numbers (1-2-5 steps);
 * margins are computed from the longest label so nothing is clipped; series that would overlap get rows of their own.
 */

export const COLORS: Record<string, string> = {
  direct: '#777777',
  streamed: '#1b7f3b',
  buffered: '#c0392b',
  'content-length': '#2c6fbb',
  chunked: '#d68910',
  target: '#8e44ad',
};

export const colorOf = (mode: string): string => COLORS[mode] ?? '#555555';

export const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/** About how wide a label is at 12 px (for margins; generous so labels are never clipped). */
const textWidth = (s: string, px = 12): number => Math.ceil(s.length * px * 0.62);

/** `0.5 ms`, `12 ms`, `1.5 s`. */
export function formatMs(v: number): string {
  if (v >= 1000) return `${trim(v / 1000)} s`;
  return `${trim(v)} ms`;
}

/** A number without float noise: 0.30000000000000004 -> 0.3. */
function trim(v: number): string {
  return String(Number(v.toPrecision(3)));
}

/** Round ticks from 0 to at least `max`, 1-2-5 steps, about `count` of them. */
export function linearTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(Number(v.toPrecision(6)));
  if ((ticks.at(-1) ?? 0) < max) ticks.push(Number(((ticks.at(-1) ?? 0) + step).toPrecision(6)));
  return ticks;
}

/** 1-2-5 ticks per decade covering [min, max] (both > 0). */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) for (const m of hi - lo > 3 ? [1] : [1, 2, 5]) ticks.push(Number((m * 10 ** e).toPrecision(6)));
  const first = ticks.filter((t) => t <= min).at(-1) ?? ticks[0] ?? min;
  const last = ticks.find((t) => t >= max) ?? ticks.at(-1) ?? max;
  return ticks.filter((t) => t >= first && t <= last);
}

export interface Scale {
  (v: number): number;
  ticks: number[];
  log: boolean;
}

/** A linear or log scale from the data's range to [x0, x1]. */
export function scale(values: readonly number[], x0: number, x1: number, log: boolean): Scale {
  const pos = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (log) {
    const ticks = logTicks(Math.min(...pos, 1), Math.max(...pos, 1));
    const a = Math.log10(ticks[0] as number);
    const b = Math.log10(ticks.at(-1) as number);
    const f = ((v: number) => x0 + ((Math.log10(Math.max(v, ticks[0] as number)) - a) / (b - a || 1)) * (x1 - x0)) as Scale;
    return Object.assign(f, { ticks, log });
  }
  const ticks = linearTicks(Math.max(...pos, 0));
  const top = ticks.at(-1) as number;
  const f = ((v: number) => x0 + (v / (top || 1)) * (x1 - x0)) as Scale;
  return Object.assign(f, { ticks, log });
}

/** A horizontal axis at `y` with its ticks, grid lines up to `top`, and its label (saying log scale when it is). */
export function xAxis(x: Scale, y: number, top: number, label: string, fmt: (v: number) => string): string {
  let out = `<line x1="${x(x.ticks[0] as number)}" y1="${y}" x2="${x(x.ticks.at(-1) as number)}" y2="${y}" stroke="#333"/>`;
  for (const t of x.ticks) {
    const px = x(t).toFixed(1);
    out += `<line class="grid" x1="${px}" y1="${top}" x2="${px}" y2="${y}" stroke="#e3e3e3"/>`;
    out += `<line x1="${px}" y1="${y}" x2="${px}" y2="${y + 5}" stroke="#333"/>`;
    out += `<text class="tick" x="${px}" y="${y + 18}" font-size="11" text-anchor="middle">${esc(fmt(t))}</text>`;
  }
  const mid = (x(x.ticks[0] as number) + x(x.ticks.at(-1) as number)) / 2;
  out += `<text class="axis-label" x="${mid.toFixed(1)}" y="${y + 36}" font-size="12" text-anchor="middle">${esc(label)}${x.log ? ' (log scale)' : ''}</text>`;
  return out;
}

/** A vertical axis at `x` (ticks on the left). */
export function yAxis(y: Scale, x: number, right: number, label: string, fmt: (v: number) => string, height: number): string {
  let out = `<line x1="${x}" y1="${y(y.ticks[0] as number)}" x2="${x}" y2="${y(y.ticks.at(-1) as number)}" stroke="#333"/>`;
  for (const t of y.ticks) {
    const py = y(t).toFixed(1);
    out += `<line class="grid" x1="${x}" y1="${py}" x2="${right}" y2="${py}" stroke="#e3e3e3"/>`;
    out += `<text class="tick" x="${x - 8}" y="${(y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${esc(fmt(t))}</text>`;
  }
  out += `<text class="axis-label" x="14" y="${(height / 2).toFixed(1)}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${(height / 2).toFixed(1)})">${esc(label)}${y.log ? ' (log scale)' : ''}</text>`;
  return out;
}

export function svgOpen(id: string, width: number, height: number, title: string): string {
  return `<svg class="chart" id="${id}" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}" font-family="system-ui, sans-serif"><rect width="${width}" height="${height}" fill="#fcfcfc"/>`;
}

/** A legend row of colored squares and names, at (x, y). */
export function legend(modes: readonly string[], x: number, y: number): string {
  let out = '';
  let at = x;
  for (const m of modes) {
    out += `<rect class="legend" x="${at}" y="${y - 10}" width="12" height="12" fill="${colorOf(m)}"/><text x="${at + 16}" y="${y}" font-size="12">${esc(m)}</text>`;
    at += 16 + textWidth(m) + 20;
  }
  return out;
}

export interface Bar {
  group: string;
  mode: string;
  value: number;
  /** Shown right of the bar instead of the formatted value. */
  note?: string;
}

/**
 * Horizontal bars grouped by `group` (a size, a metric), one bar per mode, on a linear axis from 0 (bars compare
 * lengths, which only a scale from zero shows honestly).
 */
export function barChart(id: string, title: string, bars: readonly Bar[], axisLabel: string, fmt: (v: number) => string): string {
  const groups = [...new Set(bars.map((b) => b.group))];
  const modes = [...new Set(bars.map((b) => b.mode))];
  const W = 860;
  const left = 16 + Math.max(...groups.map((g) => textWidth(g)), 40);
  const notes = bars.map((b) => b.note ?? fmt(b.value));
  const right = W - 16 - Math.max(...notes.map((n) => textWidth(n, 11)), 40);
  const barH = 14;
  const groupH = modes.length * (barH + 4) + 14;
  const top = 34;
  const plotBottom = top + groups.length * groupH;
  const H = plotBottom + 50;
  const x = scale(bars.map((b) => b.value), left, right, false);
  let out = svgOpen(id, W, H, title) + legend(modes, left, 18) + xAxis(x, plotBottom, top, axisLabel, fmt);
  groups.forEach((g, gi) => {
    const gy = top + gi * groupH + 7;
    out += `<text class="group" x="${left - 8}" y="${gy + (modes.length * (barH + 4)) / 2 + 4}" font-size="12" text-anchor="end">${esc(g)}</text>`;
    modes.forEach((m, mi) => {
      const b = bars.find((v) => v.group === g && v.mode === m);
      if (b === undefined) return;
      const y = gy + mi * (barH + 4);
      const w = Math.max(1, x(b.value) - left);
      out += `<rect class="bar" x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${colorOf(m)}"><title>${esc(`${g} ${m}: ${fmt(b.value)}`)}</title></rect>`;
      out += `<text class="value" x="${(left + w + 4).toFixed(1)}" y="${y + barH - 3}" font-size="11">${esc(b.note ?? fmt(b.value))}</text>`;
    });
  });
  return `${out}</svg>`;
}

/** Deterministic jitter in [-1, 1] for the i-th sample (the same page every time for the same result). */
const jitter = (i: number): number => {
  const v = Math.sin(i * 12.9898 + 1) * 43758.5453;
  return (v - Math.floor(v)) * 2 - 1;
};

/**
 * One row per mode (so series never hide each other), each sample a dot jittered vertically within its row, the
 * median a bar with its value; log axis, as samples run from a millisecond to most of a second.
 */
export function stripChart(id: string, title: string, rows: ReadonlyArray<{ mode: string; samples: readonly number[]; median: number }>, axisLabel: string): string {
  const W = 860;
  const left = 16 + Math.max(...rows.map((r) => textWidth(r.mode)), 40);
  const right = W - 40;
  const rowH = 56;
  const top = 16;
  const plotBottom = top + rows.length * rowH;
  const H = plotBottom + 50;
  const x = scale(rows.flatMap((r) => [...r.samples]), left, right, true);
  let out = svgOpen(id, W, H, title) + xAxis(x, plotBottom, top, axisLabel, formatMs);
  rows.forEach((r, ri) => {
    const cy = top + ri * rowH + rowH / 2;
    out += `<text class="row-label" x="${left - 8}" y="${cy + 4}" font-size="12" text-anchor="end">${esc(r.mode)}</text>`;
    r.samples.forEach((v, i) => {
      out += `<circle class="sample" cx="${x(v).toFixed(1)}" cy="${(cy + 6 + jitter(i + ri * 1000) * (rowH / 2 - 14)).toFixed(1)}" r="3.5" fill="${colorOf(r.mode)}" fill-opacity="0.7"><title>${esc(formatMs(v))}</title></circle>`;
    });
    const mx = x(r.median);
    const nearRight = mx > right - 90;
    out += `<rect class="median" x="${(mx - 1.5).toFixed(1)}" y="${cy - rowH / 2 + 4}" width="3" height="${rowH - 8}" fill="#000"/>`;
    out += `<text class="median-label" x="${(mx + (nearRight ? -6 : 6)).toFixed(1)}" y="${cy - rowH / 2 + 12}" font-size="11" font-weight="bold" text-anchor="${nearRight ? 'end' : 'start'}">median ${esc(formatMs(r.median))}</text>`;
  });
  return `${out}</svg>`;
}

/** Lines over categories placed on a log axis of their numeric value (object sizes), log y (so small values show). */
export function lineChart(
  id: string,
  title: string,
  series: ReadonlyArray<{ mode: string; points: ReadonlyArray<{ x: number; xLabel: string; y: number }> }>,
  xLabel: string,
  yLabel: string,
): string {
  const W = 860;
  const H = 340;
  const left = 90;
  const right = W - 30;
  const top = 34;
  const bottom = H - 56;
  const all = series.flatMap((s) => s.points);
  const xs = [...new Map(all.map((p) => [p.x, p.xLabel])).entries()].sort((a, b) => a[0] - b[0]);
  const lx = (v: number): number => left + 20 + ((Math.log2(v) - Math.log2(xs[0]?.[0] ?? 1)) / (Math.log2(xs.at(-1)?.[0] ?? 2) - Math.log2(xs[0]?.[0] ?? 1) || 1)) * (right - left - 40);
  const ys = scale(all.map((p) => p.y), bottom, top, true);
  let out = svgOpen(id, W, H, title) + legend(series.map((s) => s.mode), left, 18) + yAxis(ys, left, right, yLabel, formatMs, H);
  out += `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/>`;
  for (const [v, label] of xs) {
    out += `<line x1="${lx(v).toFixed(1)}" y1="${bottom}" x2="${lx(v).toFixed(1)}" y2="${bottom + 5}" stroke="#333"/><text class="tick" x="${lx(v).toFixed(1)}" y="${bottom + 18}" font-size="11" text-anchor="middle">${esc(label)}</text>`;
  }
  out += `<text class="axis-label" x="${((left + right) / 2).toFixed(1)}" y="${bottom + 38}" font-size="12" text-anchor="middle">${esc(xLabel)} (log scale)</text>`;
  series.forEach((s, si) => {
    // Modes a few pixels apart sideways, so equal values do not hide each other.
    const dx = (si - (series.length - 1) / 2) * 4;
    const pts = s.points.map((p) => `${(lx(p.x) + dx).toFixed(1)},${ys(p.y).toFixed(1)}`);
    out += `<polyline class="series" points="${pts.join(' ')}" fill="none" stroke="${colorOf(s.mode)}" stroke-width="2"/>`;
    for (const p of s.points) out += `<circle class="point" cx="${(lx(p.x) + dx).toFixed(1)}" cy="${ys(p.y).toFixed(1)}" r="3.5" fill="${colorOf(s.mode)}"><title>${esc(`${s.mode} ${p.xLabel}: ${formatMs(p.y)}`)}</title></circle>`;
  });
  return `${out}</svg>`;
}
