import { ReplayClient, serialise, type Observed } from './client.js';
import { percentiles, type Percentiles } from '../percentiles.js';
import { cut, formatTable, type Column } from '../table.js';
import type { Outcome, ReplayRequest, Skipped, Trace } from './trace.js';

export interface ReplayOptions {
  /** http://host:port of the proxy (or anything HTTP) to replay against. */
  target: URL;
  /** Timed mode: 1 = as recorded, 2 = twice as fast. Ignored with asap. */
  speed?: number;
  /** As fast as possible, at most `concurrency` requests in flight. */
  asap?: boolean;
  concurrency?: number | undefined;
  /** Per request (default 30 s). */
  timeoutMs?: number;
  /** https targets: extra CA (PEM) to trust, and whether to skip verification (`--insecure`). */
  ca?: string | undefined;
  insecure?: boolean | undefined;
  onResult?: (r: ReplayResult) => void;
}

export interface ReplayResult {
  seq: number;
  ref: string;
  method: string;
  url: string;
  recorded: ReplayRequest['recorded'];
  observed: Observed;
  /** How late the request was sent compared with its schedule (timed mode). */
  lagMs?: number | undefined;
  /** null when one side is unknown. */
  match: { status: boolean | null; outcome: boolean | null };
  notes: string[];
}

export type { Percentiles };

export interface ReplaySummary {
  trace: string;
  format: Trace['format'];
  target: string;
  mode: 'timed' | 'asap';
  speed?: number | undefined;
  concurrency?: number | undefined;
  requests: number;
  replayed: number;
  skipped: number;
  errors: number;
  statusMismatches: number;
  outcomeMismatches: number;
  /** Requests whose recorded and observed outcome were both known. */
  outcomesCompared: number;
  durationMs: number;
  requestsPerSec: number;
  /** Connections opened to the target (one per recorded session when the log names sessions). */
  connections: number;
  ttfbMs: Percentiles | undefined;
  recordedTtfbMs: Percentiles | undefined;
  maxLagMs?: number | undefined;
  recordedOutcomes: Partial<Record<Outcome, number>>;
  observedOutcomes: Partial<Record<Outcome, number>>;
}

export interface ReplayReport {
  summary: ReplaySummary;
  requests: ReplayResult[];
  skipped: Skipped[];
}

/**
 * Re-issues every request of `trace` against the target and compares what comes back with what was recorded.
 * Timed mode keeps the recorded gaps between arrivals (divided by `speed`) with no limit on concurrency across
 * sessions, as the recorded clients had none (within a recorded session, requests go one after another on its
 * connection); asap mode sends back to back from `concurrency` workers, in arrival order.
 */
export async function replay(trace: Trace, name: string, opts: ReplayOptions): Promise<ReplayReport> {
  const https = opts.target.protocol === 'https:';
  const hostname = opts.target.hostname.replace(/^\[|\]$/g, '');
  const client = new ReplayClient(
    hostname,
    Number(opts.target.port || (https ? 443 : 80)),
    opts.timeoutMs,
    https ? { servername: hostname, ca: opts.ca, rejectUnauthorized: opts.insecure !== true } : undefined,
  );
  const results: ReplayResult[] = new Array(trace.requests.length);
  const asap = opts.asap === true;
  // Requests are serialised before the clock starts, so the rate measures sending, not preparing.
  const wire = trace.requests.map(serialise);
  const t0 = performance.now();
  const one = async (i: number, lagMs?: number): Promise<void> => {
    const req = trace.requests[i] as ReplayRequest;
    const observed = await client.send(req, wire[i]);
    const r: ReplayResult = {
      seq: req.seq,
      ref: req.ref,
      method: req.method,
      url: req.url,
      recorded: req.recorded,
      observed,
      lagMs,
      match: {
        status: req.recorded.status === undefined ? null : observed.status === req.recorded.status,
        outcome: req.recorded.outcome === 'unknown' || observed.outcome === 'unknown' ? null : observed.outcome === req.recorded.outcome,
      },
      notes: req.notes,
    };
    results[i] = r;
    opts.onResult?.(r);
  };
  try {
    if (asap) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < trace.requests.length) await one(next++);
      };
      await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 1) }, worker));
    } else {
      const speed = opts.speed ?? 1;
      const firstMs = trace.requests.find((r) => r.startMs !== undefined)?.startMs ?? 0;
      let prev = firstMs;
      const running: Array<Promise<void>> = [];
      // A recorded session is one HTTP/1.1 connection whose requests went one after another: a request whose
      // session's previous response has not ended yet waits for it (and is late by that much) rather than opening a
      // second connection, so the connections opened are the recording's whatever the machine's speed.
      const sessionTail = new Map<string, Promise<void>>();
      const sendAt = (i: number, at: number): Promise<void> => one(i, Math.max(0, performance.now() - t0 - at));
      for (let i = 0; i < trace.requests.length; i++) {
        const at = ((trace.requests[i]?.startMs ?? prev) - firstMs) / speed;
        prev = trace.requests[i]?.startMs ?? prev;
        const wait = at - (performance.now() - t0);
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        const session = trace.requests[i]?.session;
        const before = session === undefined ? undefined : sessionTail.get(session);
        const sent = before === undefined ? sendAt(i, at) : before.then(() => sendAt(i, at), () => sendAt(i, at));
        if (session !== undefined) sessionTail.set(session, sent);
        running.push(sent);
      }
      await Promise.all(running);
    }
  } finally {
    client.close();
  }
  const durationMs = performance.now() - t0;
  return { summary: summarise(trace, name, opts, results, durationMs, client.connections), requests: results, skipped: trace.skipped };
}

function summarise(trace: Trace, name: string, opts: ReplayOptions, results: ReplayResult[], durationMs: number, connections: number): ReplaySummary {
  const count = (pick: (r: ReplayResult) => Outcome): Partial<Record<Outcome, number>> => {
    const c: Partial<Record<Outcome, number>> = {};
    for (const r of results) c[pick(r)] = (c[pick(r)] ?? 0) + 1;
    return c;
  };
  const lags = results.map((r) => r.lagMs).filter((x): x is number => x !== undefined);
  return {
    trace: name,
    format: trace.format,
    target: opts.target.origin,
    mode: opts.asap === true ? 'asap' : 'timed',
    speed: opts.asap === true ? undefined : (opts.speed ?? 1),
    concurrency: opts.asap === true ? Math.max(1, opts.concurrency ?? 1) : undefined,
    requests: results.length + trace.skipped.length,
    replayed: results.length,
    skipped: trace.skipped.length,
    errors: results.filter((r) => r.observed.error !== undefined).length,
    statusMismatches: results.filter((r) => r.match.status === false).length,
    outcomeMismatches: results.filter((r) => r.match.outcome === false).length,
    outcomesCompared: results.filter((r) => r.match.outcome !== null).length,
    durationMs: round(durationMs),
    requestsPerSec: round(results.length / (durationMs / 1000)),
    connections,
    ttfbMs: sampled(results.map((r) => r.observed.ttfbMs)),
    recordedTtfbMs: sampled(results.map((r) => r.recorded.ttfbMs)),
    maxLagMs: lags.length === 0 ? undefined : round(Math.max(...lags)),
    recordedOutcomes: count((r) => r.recorded.outcome),
    observedOutcomes: count((r) => r.observed.outcome),
  };
}

const round = (x: number): number => Math.round(x * 1000) / 1000;

/** The sample's percentiles, or undefined for an empty sample (shown as n/a). */
function sampled(xs: ReadonlyArray<number | undefined>): Percentiles | undefined {
  const p = percentiles(xs);
  return p.n === 0 ? undefined : p;
}

/** The per-request table: the widest of URL, outcomes and notes is cut first to fit the width. */
const REPORT_COLUMNS: Column[] = [
  { header: 'seq', align: 'right' },
  { header: 'method' },
  { header: 'url', shrink: true, min: 16, max: 60 },
  { header: 'recorded', shrink: true, min: 12, max: 30 },
  { header: 'observed', shrink: true, min: 12, max: 30 },
  { header: 'ttfb ms', align: 'right' },
  { header: '', shrink: true },
];

/** The human report: one line per request, mismatches marked, then the summary, the mismatches and the skipped. */
export function formatReport(rep: ReplayReport, width?: number): string {
  const out: string[] = [];
  const side = (status: number | undefined, outcome: Outcome, detail?: string): string =>
    `${status ?? '---'} ${outcome}${detail === undefined ? '' : ` (${detail})`}`;
  const rows = rep.requests.map((r) => {
    const marks: string[] = [];
    if (r.match.status === false) marks.push('status differs');
    if (r.match.outcome === false) marks.push('outcome differs');
    if (r.observed.error !== undefined) marks.push(r.observed.error);
    return [
      String(r.seq),
      r.method,
      r.url,
      side(r.recorded.status, r.recorded.outcome, r.recorded.detail),
      side(r.observed.status, r.observed.outcome, r.observed.detail),
      r.observed.ttfbMs?.toFixed(1) ?? '-',
      marks.length > 0 ? `! ${marks.join('; ')}` : '',
    ];
  });
  out.push(...formatTable(REPORT_COLUMNS, rows, { width }));
  const s = rep.summary;
  const pct = (p: Percentiles | undefined): string => (p === undefined ? 'n/a' : `p50 ${p.p50.toFixed(1)}  p90 ${p.p90.toFixed(1)}  p99 ${p.p99.toFixed(1)}  max ${p.max.toFixed(1)}`);
  const outcomes = (c: Partial<Record<Outcome, number>>): string => Object.entries(c).map(([k, v]) => `${k} ${v}`).join(', ');
  out.push('');
  out.push(`${s.trace} (${s.format}) against ${s.target}, ${s.mode === 'asap' ? `as fast as possible, concurrency ${s.concurrency}` : `timed, speed ${s.speed}`}`);
  out.push(`  replayed ${s.replayed}, skipped ${s.skipped}, errors ${s.errors} in ${(s.durationMs / 1000).toFixed(2)} s (${s.requestsPerSec.toFixed(1)} req/s) over ${s.connections} connections`);
  out.push(`  status mismatches ${s.statusMismatches}; outcome mismatches ${s.outcomeMismatches} of ${s.outcomesCompared} compared`);
  out.push(`  recorded outcomes: ${outcomes(s.recordedOutcomes)}`);
  out.push(`  observed outcomes: ${outcomes(s.observedOutcomes)}`);
  out.push(`  ttfb ms observed: ${pct(s.ttfbMs)}`);
  out.push(`  ttfb ms recorded: ${pct(s.recordedTtfbMs)}`);
  if (s.maxLagMs !== undefined) out.push(`  schedule: sent at most ${s.maxLagMs.toFixed(1)} ms late`);
  const differ = rep.requests.filter((r) => r.match.status === false || r.match.outcome === false || r.observed.error !== undefined);
  if (differ.length > 0) {
    out.push('', 'Mismatches:');
    for (const r of differ) {
      const what: string[] = [];
      if (r.match.status === false) what.push(`status ${r.recorded.status ?? '?'} -> ${r.observed.status ?? '?'}`);
      if (r.match.outcome === false) what.push(`outcome ${r.recorded.outcome} -> ${r.observed.outcome}`);
      if (r.observed.error !== undefined) what.push(r.observed.error);
      out.push(`  ${r.seq} ${r.method} ${cut(r.url, 60)}: ${what.join('; ')}`);
    }
  }
  const noted = rep.requests.filter((r) => r.notes.length > 0);
  if (noted.length > 0) {
    out.push('', 'Notes:');
    for (const r of noted) out.push(`  ${r.seq} ${r.ref}: ${r.notes.join('; ')}`);
  }
  if (rep.skipped.length > 0) {
    out.push('', 'Skipped:');
    for (const k of rep.skipped) out.push(`  ${k.ref}: ${k.reason}`);
  }
  return out.join('\n');
}

/** Several targets replayed with the same trace: each one's report, and the requests where they answered differently. */
export interface Comparison {
  targets: string[];
  reports: ReplayReport[];
  /** Requests whose status or outcome differs between targets (outcome compared only where all are known). */
  differences: Array<{ seq: number; method: string; url: string; recorded: ReplayRequest['recorded']; observed: Array<{ target: string; status: number | undefined; outcome: Outcome; error?: string | undefined }> }>;
}

export function compare(reports: ReplayReport[]): Comparison {
  const targets = reports.map((r) => r.summary.target);
  const first = reports[0];
  const differences: Comparison['differences'] = [];
  for (let i = 0; first !== undefined && i < first.requests.length; i++) {
    const rows = reports.map((rep) => rep.requests[i] as ReplayResult);
    const head = rows[0] as ReplayResult;
    const statuses = new Set(rows.map((r) => r.observed.status));
    const outcomes = rows.map((r) => r.observed.outcome);
    const outcomeDiffers = !outcomes.includes('unknown') && new Set(outcomes).size > 1;
    if (statuses.size > 1 || outcomeDiffers) {
      differences.push({
        seq: head.seq,
        method: head.method,
        url: head.url,
        recorded: head.recorded,
        observed: rows.map((r, k) => ({ target: targets[k] as string, status: r.observed.status, outcome: r.observed.outcome, error: r.observed.error })),
      });
    }
  }
  return { targets, reports, differences };
}

export function formatComparison(c: Comparison): string {
  const out: string[] = [];
  c.reports.forEach((rep, i) => {
    out.push(`=== ${c.targets[i]} ===`, formatReport(rep), '');
  });
  out.push(`=== compared: ${c.targets.join(' vs ')} ===`);
  for (let i = 0; i < c.reports.length; i++) {
    const s = c.reports[i]?.summary;
    if (s !== undefined) out.push(`  ${c.targets[i]}: ${s.statusMismatches} status and ${s.outcomeMismatches} outcome mismatches against the recording, ttfb p50 ${s.ttfbMs?.p50.toFixed(1) ?? 'n/a'} ms`);
  }
  const total = c.reports[0]?.requests.length ?? 0;
  out.push(`  same status and outcome on every target: ${total - c.differences.length} of ${total}`);
  for (const d of c.differences) {
    out.push(`  ${d.seq} ${d.method} ${cut(d.url, 60)}: recorded ${d.recorded.status ?? '?'} ${d.recorded.outcome}; ${d.observed.map((o) => `${o.target} ${o.status ?? '---'} ${o.outcome}`).join('; ')}`);
  }
  return out.join('\n');
}
