import { formatTable, type Column } from '../table.js';
import type { MachineNote } from './processes.js';
import type { ScenarioRow } from './scenarios.js';

/** One bench run: the machine, the scale, and every scenario's rows (same-run direct baselines included). */
export interface BenchResult {
  date: string;
  quick: boolean;
  target: string | null;
  machine: MachineNote;
  scenarios: ScenarioRow[];
}

const fmt = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '-' : String(v));

const BENCH_COLUMNS: Column[] = [
  { header: 'scenario' },
  { header: 'mode' },
  { header: 'ttfb p50/p90/p99 ms', align: 'right' },
  { header: 'ttlb p50 ms', align: 'right' },
  { header: 'req/s', align: 'right' },
  { header: 'vs direct', align: 'right' },
  { header: 'other', shrink: true, min: 12 },
];

/** A readable table for the terminal (the shared table helper; `width` cuts the last column to fit). */
export function formatBenchTable(r: BenchResult, width?: number): string {
  const head = `sluice bench ${r.quick ? '(quick) ' : ''}on ${r.machine.cores} cores, ${r.machine.cpu}, node ${r.machine.node}${r.target !== null ? `, target ${r.target}` : ''}`;
  const rows = r.scenarios.map((s) => {
    const ttfb = s.ttfbMs === undefined ? '-' : `${s.ttfbMs.p50}/${s.ttfbMs.p90}/${s.ttfbMs.p99}`;
    const vs = s.ratioToDirect !== undefined ? `x${s.ratioToDirect}` : typeof s['ttfbDeltaVsDirectMs'] === 'number' ? `+${String(s['ttfbDeltaVsDirectMs'])}ms` : '';
    const other = s['originRequests'] !== undefined ? `origin requests ${String(s['originRequests'])} for ${String(s['clients'])} clients` : s.latencyMs !== undefined ? `latency p50 ${s.latencyMs.p50} p99 ${s.latencyMs.p99} ms` : '';
    return [s.name, s.mode, ttfb, fmt(s.ttlbMs?.p50), fmt(s.rps), vs, other];
  });
  return [head, '', ...formatTable(BENCH_COLUMNS, rows, { width })].join('\n');
}

const escapeHtml = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/**
 * A self-contained HTML page: the result as JSON plus a small script that draws SVG charts (no external assets):
 * the TTFB distribution of a miss, streamed vs buffered vs direct, and the adaptive-streaming threshold sweep.
 */
export function renderHtml(r: BenchResult): string {
  const data = JSON.stringify(r).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sluice bench ${escapeHtml(r.date)}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 960px; }
  h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
  svg.chart { background: #fafafa; border: 1px solid #ddd; }
  .legend span { display: inline-block; margin-right: 1.5em; }
  .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
  table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
  th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
</style>
</head>
<body>
<h1>sluice bench</h1>
<p id="machine"></p>
<h2>Time to first byte of a miss (origin sending chunks with a delay)</h2>
<p>Each dot is one request; the bar marks the median. Streamed delivery starts when the origin's first chunk arrives;
buffered delivery waits for the last.</p>
<div id="ttfb"></div>
<h2>Adaptive streaming sweep: time to last byte by object size</h2>
<p>Misses of objects with Content-Length, delivered streamed or whole; median per size.</p>
<div id="sweep"></div>
<h2>All results</h2>
<table id="rows"><thead><tr><th>scenario</th><th>mode</th><th>ttfb p50 ms</th><th>ttlb p50 ms</th><th>req/s</th><th>vs direct</th></tr></thead><tbody></tbody></table>
<script id="bench-data" type="application/json">${data}</script>
<script>
(function () {
  var result = JSON.parse(document.getElementById('bench-data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  var colors = { direct: '#888', streamed: '#1b7f3b', buffered: '#c0392b', target: '#2c6fbb' };
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function legend(container, modes) {
    var d = document.createElement('div');
    d.className = 'legend';
    modes.forEach(function (m) { d.innerHTML += '<span><i style="background:' + (colors[m] || '#555') + '"></i>' + m + '</span>'; });
    container.appendChild(d);
  }
  var m = result.machine;
  document.getElementById('machine').textContent = result.date + ' - ' + m.cores + ' cores, ' + m.cpu + ', node ' + m.node +
    (result.quick ? ' (quick run)' : '') + (result.target ? ', target ' + result.target : '');

  // TTFB distribution: a strip of samples per mode on a log-ish axis (sqrt scale keeps ms and 100s of ms readable).
  var ttfbRows = result.scenarios.filter(function (s) { return s.name === 'miss-ttfb'; });
  if (ttfbRows.length) {
    var W = 860, H = 60 + 50 * ttfbRows.length, left = 90;
    var max = Math.max.apply(null, ttfbRows.map(function (s) { return Math.max.apply(null, s.ttfbSamplesMs); }));
    var x = function (v) { return left + Math.sqrt(v / max) * (W - left - 20); };
    var svg = el('svg', { class: 'chart', id: 'chart-ttfb', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H });
    ttfbRows.forEach(function (s, i) {
      var y = 40 + i * 50;
      el('text', { x: 8, y: y + 4, 'font-size': 12 }, svg).textContent = s.mode;
      s.ttfbSamplesMs.forEach(function (v) { el('circle', { class: 'sample', cx: x(v), cy: y, r: 3, fill: colors[s.mode] || '#555', 'fill-opacity': 0.6 }, svg); });
      el('rect', { class: 'median', x: x(s.ttfbMs.p50) - 1, y: y - 12, width: 2, height: 24, fill: '#000' }, svg);
      var nearRight = x(s.ttfbMs.p50) > W - 80;
      el('text', { x: x(s.ttfbMs.p50) + (nearRight ? -4 : 4), y: y - 8, 'font-size': 10, 'text-anchor': nearRight ? 'end' : 'start' }, svg).textContent = s.ttfbMs.p50 + ' ms';
    });
    [0, 0.25, 0.5, 1].forEach(function (f) {
      var v = Math.round(max * f * f * 10) / 10;
      el('text', { x: x(v), y: H - 6, 'font-size': 10, 'text-anchor': 'middle' }, svg).textContent = v + ' ms';
    });
    var c = document.getElementById('ttfb'); c.appendChild(svg); legend(c, ttfbRows.map(function (s) { return s.mode; }));
  }

  // Sweep: median TTLB per size, one line per mode.
  var sweepRows = result.scenarios.filter(function (s) { return s.name.indexOf('sweep-') === 0; });
  if (sweepRows.length) {
    var sizes = []; sweepRows.forEach(function (s) { if (sizes.indexOf(s.size) < 0) sizes.push(s.size); });
    var modes = []; sweepRows.forEach(function (s) { if (modes.indexOf(s.mode) < 0) modes.push(s.mode); });
    var W2 = 860, H2 = 300, l2 = 60, b2 = 40;
    var ymax = Math.max.apply(null, sweepRows.map(function (s) { return s.ttlbMs.p50; })) * 1.1;
    var px = function (i) { return l2 + (i + 0.5) * (W2 - l2 - 20) / sizes.length; };
    var py = function (v) { return H2 - b2 - (v / ymax) * (H2 - b2 - 20); };
    var svg2 = el('svg', { class: 'chart', id: 'chart-sweep', width: W2, height: H2, viewBox: '0 0 ' + W2 + ' ' + H2 });
    var label = function (sz) { return /k$/.test(sz) ? sz.slice(0, -1) + ' KiB' : /m$/.test(sz) ? sz.slice(0, -1) + ' MiB' : sz + ' B'; };
    sizes.forEach(function (sz, i) { el('text', { x: px(i), y: H2 - 20, 'font-size': 11, 'text-anchor': 'middle' }, svg2).textContent = label(sz); });
    [0, 0.5, 1].forEach(function (f) { el('text', { x: 8, y: py(ymax * f) + 4, 'font-size': 10 }, svg2).textContent = (Math.round(ymax * f * 10) / 10) + ' ms'; });
    modes.forEach(function (mode) {
      var pts = sizes.map(function (sz, i) {
        var row = sweepRows.filter(function (s) { return s.size === sz && s.mode === mode; })[0];
        return row ? px(i) + ',' + py(row.ttlbMs.p50) : null;
      }).filter(Boolean);
      el('polyline', { class: 'series', points: pts.join(' '), fill: 'none', stroke: colors[mode] || '#555', 'stroke-width': 2 }, svg2);
      pts.forEach(function (p) { var xy = p.split(','); el('circle', { class: 'point', cx: xy[0], cy: xy[1], r: 3, fill: colors[mode] || '#555' }, svg2); });
    });
    var c2 = document.getElementById('sweep'); c2.appendChild(svg2); legend(c2, modes);
  }

  var tbody = document.querySelector('#rows tbody');
  result.scenarios.forEach(function (s) {
    var tr = document.createElement('tr');
    [s.name, s.mode, s.ttfbMs ? s.ttfbMs.p50 : '', s.ttlbMs ? s.ttlbMs.p50 : '', s.rps || '', s.ratioToDirect !== undefined ? 'x' + s.ratioToDirect : ''].forEach(function (v) {
      var td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    });
    tbody.appendChild(tr);
  });
  document.body.setAttribute('data-rendered', 'yes');
})();
</script>
</body>
</html>
`;
}
