import { formatTable, type Column } from '../table.js';
import { barChart, formatMs, lineChart, stripChart, type Bar } from './svg.js';
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

/** `100` -> 100 B, `64k` -> 64 KiB, `1m` -> 1 MiB (bytes, for the axis position). */
function sizeOf(sz: string): { bytes: number; label: string } {
  const n = Number.parseFloat(sz);
  if (/k$/i.test(sz)) return { bytes: n * 1024, label: `${n} KiB` };
  if (/m$/i.test(sz)) return { bytes: n * 1024 * 1024, label: `${n} MiB` };
  return { bytes: n, label: `${n} B` };
}

const count = (v: number): string => String(Number(v.toPrecision(4)));

function ttfbChart(r: BenchResult): string {
  const rows = r.scenarios.filter((s) => s.name === 'miss-ttfb' && s.ttfbSamplesMs !== undefined && s.ttfbMs !== undefined);
  if (rows.length === 0) return '';
  return section(
    'Time to first byte of a miss (origin sending chunks with a delay)',
    'Each dot is one request (spread up and down within its row so none hides another); the black bar is the median. Streamed delivery starts when the origin\'s first chunk arrives; buffered delivery waits for the last.',
    stripChart('chart-ttfb', 'TTFB of a miss by mode', rows.map((s) => ({ mode: s.mode, samples: s.ttfbSamplesMs ?? [], median: s.ttfbMs?.p50 ?? NaN })), 'time to first byte'),
  );
}

function sweepChart(r: BenchResult): string {
  const rows = r.scenarios.filter((s) => s.name.startsWith('sweep-') && typeof s['size'] === 'string' && s.ttlbMs !== undefined);
  if (rows.length === 0) return '';
  const modes = [...new Set(rows.map((s) => s.mode))];
  const series = modes.map((mode) => ({
    mode,
    points: rows.filter((s) => s.mode === mode).map((s) => ({ x: sizeOf(String(s['size'])).bytes, xLabel: sizeOf(String(s['size'])).label, y: s.ttlbMs?.p50 ?? NaN })),
  }));
  return section(
    'Adaptive streaming sweep: time to last byte by object size',
    'Misses of objects with Content-Length, delivered streamed or whole; the median per size. Both axes are logarithmic, so the small objects are as readable as the large ones.',
    lineChart('chart-sweep', 'TTLB by object size', series, 'object size', 'time to last byte, median'),
  );
}

function hitChart(r: BenchResult): string {
  const rows = r.scenarios.filter((s) => s.name.startsWith('hit-') && s.rps !== undefined);
  if (rows.length === 0) return '';
  const bars = rows.map((s) => ({
    group: `${sizeOf(s.name.slice(4)).label} hit`,
    mode: s.mode,
    value: s.rps ?? 0,
    note: `${count(s.rps ?? 0)} req/s${s.latencyMs === undefined ? '' : `, p99 ${s.latencyMs.p99} ms`}${s.ratioToDirect === undefined ? '' : `, x${s.ratioToDirect} of direct`}`,
  }));
  return section(
    'Hit framing: requests per second by object size',
    'Cache hits sent with Content-Length or chunked (the same header path), beside the origin alone (direct).',
    barChart('chart-hits', 'Hit requests per second', bars, 'requests per second', count),
  );
}

function loadChart(r: BenchResult): string {
  const load = r.scenarios.find((s) => s.name === 'load');
  if (load === undefined) return '';
  const bars: Bar[] = [];
  if (load.latencyMs !== undefined) for (const q of ['p50', 'p90', 'p99'] as const) bars.push({ group: `hit latency ${q}`, mode: load.mode, value: load.latencyMs[q] });
  if (load.ttfbMs !== undefined) for (const q of ['p50', 'p90', 'p99'] as const) bars.push({ group: `miss TTFB ${q}`, mode: load.mode, value: load.ttfbMs[q] });
  return section(
    `Under load: ${count(load.rps ?? 0)} hits per second over ${String(load['connections'] ?? '?')} connections`,
    'Latency of the 1 KiB hits autocannon sends, and time to first byte of the streamed misses sent at the same time.',
    barChart('chart-load', 'Latency under load', bars, 'milliseconds', formatMs),
  );
}

function coalesceChart(r: BenchResult): string {
  const co = r.scenarios.find((s) => s.name === 'coalesce');
  if (co === undefined) return '';
  const bars: Bar[] = [
    { group: 'clients', mode: co.mode, value: Number(co['clients'] ?? 0) },
    { group: 'origin requests', mode: co.mode, value: Number(co['originRequests'] ?? 0) },
  ];
  const ttfb: Bar[] = co.ttfbMs === undefined ? [] : (['p50', 'p90', 'p99'] as const).map((q) => ({ group: `client TTFB ${q}`, mode: co.mode, value: co.ttfbMs?.[q] ?? 0 }));
  return section(
    'Coalescing: clients at once on one cold URL',
    'How many requests reached the origin for all of them (1 means every client shared one fetch), and what each client waited for its first byte.',
    barChart('chart-coalesce', 'Clients and origin requests', bars, 'requests', count) + (ttfb.length === 0 ? '' : barChart('chart-coalesce-ttfb', 'Client TTFB', ttfb, 'time to first byte', formatMs)),
  );
}

function section(title: string, text: string, chart: string): string {
  return `<h2>${escapeHtml(title)}</h2>\n<p>${escapeHtml(text)}</p>\n<figure>${chart}</figure>\n`;
}

function resultsTable(r: BenchResult): string {
  const cell = (v: unknown): string => `<td>${escapeHtml(v === undefined ? '' : String(v))}</td>`;
  const rows = r.scenarios
    .map((s) => `<tr>${[s.name, s.mode, s.ttfbMs?.p50, s.ttlbMs?.p50, s.rps, s.ratioToDirect === undefined ? undefined : `x${s.ratioToDirect}`].map(cell).join('')}</tr>`)
    .join('\n');
  return `<table id="rows"><thead><tr><th>scenario</th><th>mode</th><th>ttfb p50 ms</th><th>ttlb p50 ms</th><th>req/s</th><th>vs direct</th></tr></thead><tbody>\n${rows}\n</tbody></table>`;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/**
 * A self-contained HTML page with static SVG charts (drawn here; the page runs no script and loads nothing): the
 * TTFB distribution of a miss, the adaptive-streaming sweep, hit framing, load and coalescing, then every row.
 */
export function renderHtml(r: BenchResult): string {
  const m = r.machine;
  const about = `${r.date} - ${m.cores} cores, ${m.cpu}, node ${m.node}${r.quick ? ' (quick run)' : ''}${r.target !== null ? `, target ${r.target}` : ''}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sluice bench ${escapeHtml(r.date)}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 900px; }
  h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
  figure { margin: 0; } svg.chart { border: 1px solid #ddd; display: block; margin-bottom: 0.5em; max-width: 100%; height: auto; }
  table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
  th:first-child, th:nth-child(2), td:first-child, td:nth-child(2) { text-align: left; }
</style>
</head>
<body>
<h1>sluice bench</h1>
<p id="machine">${escapeHtml(about)}</p>
${ttfbChart(r)}${sweepChart(r)}${hitChart(r)}${loadChart(r)}${coalesceChart(r)}<h2>All results</h2>
${resultsTable(r)}
</body>
</html>
`;
}
