import { formatTable, type Column } from './table.js';
import { STAT_HELP, type Stats } from '@sluice/core';

/** What GET /stats answers. */
export interface Snapshot {
  main: Record<string, number>;
  storage: { bytes: number; objects: number; maxBytes: number };
  backends: Array<Record<string, string | number | boolean>>;
}

export interface StatRow {
  name: string;
  value: number;
  description: string;
}

const BACKEND_HELP: Record<string, string> = {
  requests: 'Requests sent to this backend',
  failures: 'Requests to this backend that failed',
  healthy: 'Whether the probe says the backend is healthy (1) or sick (0)',
  inflight: 'Requests in flight on this backend now',
  queued: 'Requests waiting for a connection now',
  queue_rejects: 'Requests refused because the wait queue was full or too slow',
  connections: 'Connections opened to this backend',
};

/** camelCase to snake_case, the one naming scheme of every counter (as varnishstat's). */
export function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * Every counter of a snapshot as varnishstat names it: MAIN.<counter> (the same words as the JSON keys), SMA.s0.*
 * for storage, VBE.<backend>.<counter> per backend, each with what it counts.
 */
export function statRows(s: Snapshot): StatRow[] {
  const rows: StatRow[] = [];
  for (const [k, v] of Object.entries(s.main)) rows.push({ name: `MAIN.${k}`, value: v, description: STAT_HELP[k as keyof Stats] ?? '' });
  rows.push({ name: 'MAIN.n_object', value: s.storage.objects, description: 'Objects in the cache' });
  rows.push({ name: 'SMA.s0.g_bytes', value: s.storage.bytes, description: 'Bytes charged to the cache storage' });
  rows.push({ name: 'SMA.s0.g_space', value: Math.max(0, s.storage.maxBytes - s.storage.bytes), description: 'Bytes of the storage budget still free' });
  for (const b of s.backends) {
    for (const [k, v] of Object.entries(b)) {
      if (typeof v === 'string') continue;
      const name = snake(k);
      rows.push({ name: `VBE.${String(b['name'])}.${name}`, value: typeof v === 'boolean' ? Number(v) : v, description: BACKEND_HELP[name] ?? `Backend ${name}` });
    }
  }
  return rows;
}

/** varnishstat -f: globs with `*`; a leading `^` excludes. No glob keeps everything. */
export function filterRows(rows: StatRow[], globs: readonly string[]): StatRow[] {
  if (globs.length === 0) return rows;
  const re = (g: string): RegExp => new RegExp(`^${g.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
  const include = globs.filter((g) => !g.startsWith('^')).map(re);
  const exclude = globs.filter((g) => g.startsWith('^')).map((g) => re(g.slice(1)));
  return rows.filter((r) => (include.length === 0 || include.some((x) => x.test(r.name))) && !exclude.some((x) => x.test(r.name)));
}

/**
 * Aligned columns (the shared table helper, no header, as varnishstat -1): name, value, per-second rate since `prev`
 * (when watching), description (cut to fit `width`, the terminal's when stdout is one).
 */
export function formatStats(
  s: Snapshot,
  opts: { prev?: Snapshot | undefined; seconds?: number | undefined; filter?: readonly string[] | undefined; width?: number | undefined } = {},
): string {
  const rows = filterRows(statRows(s), opts.filter ?? []);
  const before = opts.prev === undefined ? undefined : new Map(statRows(opts.prev).map((r) => [r.name, r.value]));
  const seconds = opts.seconds;
  const withRate = before !== undefined && seconds !== undefined;
  const columns: Column[] = [{ header: 'counter' }, { header: 'value', align: 'right' }];
  if (withRate) columns.push({ header: 'rate', align: 'right' });
  columns.push({ header: 'description', shrink: true, min: 12 });
  const cells = rows.map((r) => {
    const row = [r.name, String(r.value)];
    if (withRate) row.push(`${((r.value - (before.get(r.name) ?? r.value)) / seconds).toFixed(1)}/s`);
    row.push(r.description);
    return row;
  });
  return formatTable(columns, cells, { header: false, width: opts.width }).join('\n');
}
