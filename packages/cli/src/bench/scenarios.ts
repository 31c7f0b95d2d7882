import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { Agent, request } from 'undici';
import { percentiles, type Percentiles, type ProcessGroup, type Running } from './processes.js';

/**
 * `sluice bench` scenarios. Each returns result rows: { name, mode, ... } with `mode` one of `direct` (the fixture
 * origin alone, the same-run baseline), `streamed` / `buffered` (Sluice with doStream on / off), `content-length` /
 * `chunked` (hit framing), or `target` (a proxy given with --target).
 */
export interface Scale {
  quick: boolean;
  /** Sequential requests per mode for latency scenarios. */
  runs: number;
  /** Seconds per autocannon run. */
  seconds: number;
  connections: number;
  /** Chunks and delay of the slow chunked origin. */
  chunks: number;
  delayMs: number;
  coalesceClients: number;
  sweepSizes: string[];
  sweepRuns: number;
}

export function scaleFor(quick: boolean, connections: number): Scale {
  return quick
    ? { quick, runs: 3, seconds: 1, connections: Math.min(connections, 8), chunks: 3, delayMs: 60, coalesceClients: 20, sweepSizes: ['100', '4k', '64k', '1m'], sweepRuns: 3 }
    : { quick, runs: 21, seconds: 5, connections, chunks: 5, delayMs: 200, coalesceClients: 100, sweepSizes: ['100', '1k', '4k', '16k', '64k', '256k', '1m'], sweepRuns: 30 };
}

export interface ScenarioRow {
  name: string;
  mode: string;
  ttfbMs?: Percentiles;
  ttlbMs?: Percentiles;
  /** Raw TTFB samples (ms), kept for the HTML distribution chart. */
  ttfbSamplesMs?: number[];
  rps?: number;
  latencyMs?: { p50: number; p90: number; p99: number };
  ratioToDirect?: number;
  [extra: string]: unknown;
}

/** A scenario's progress: how many units it will run (requests, or seconds of load), then one tick per unit. */
export interface StepProgress {
  begin(total: number, unit: string): void;
  tick(n?: number): void;
}

/** No progress (tests, library callers). */
export const NO_PROGRESS: StepProgress = { begin: () => undefined, tick: () => undefined };

/** What the scenarios run against. `buffered` is absent when the target is a foreign proxy. */
export interface Targets {
  origin: Running;
  fastOrigin: Running;
  streamed: { url: string; label: string };
  buffered: { url: string } | undefined;
  /** Sluice (or the target) in front of the fast origin, for hits; and with chunked hit framing when ours. */
  hits: { url: string; label: string };
  chunkedHits: { url: string } | undefined;
  /** Sluice with adaptive streaming off / on-for-everything, for the sweep. */
  sweepStreamed: { url: string; label: string };
  sweepBuffered: { url: string } | undefined;
}

/** Starts the fixture origins and the Sluice instances the scenarios need (or uses --target). */
export async function startTargets(group: ProcessGroup, target: string | undefined, originPort: number): Promise<Targets> {
  const origin = await group.start(['origin', '--listen', `127.0.0.1:${originPort}`]);
  const fastOrigin = await group.start(['origin', '--fast', '--listen', `127.0.0.1:${originPort === 0 ? 0 : originPort + 1}`]);
  if (target !== undefined) {
    const t = { url: target, label: 'target' };
    return { origin, fastOrigin, streamed: t, buffered: undefined, hits: t, chunkedHits: undefined, sweepStreamed: t, sweepBuffered: undefined };
  }
  const proxy = (backend: string, extra: string[] = []): Promise<Running> =>
    group.start(['proxy', '--listen', '127.0.0.1:0', '--backend', backend, '--quiet', ...extra]);
  // Chunked hit framing: a policy that drops Content-Length, so hits go out chunked.
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-bench-'));
  // Both hit instances run a responseFilter, so they take the same header path and differ only in framing.
  const chunkedConfig = path.join(dir, 'chunked.mjs');
  writeFileSync(chunkedConfig, "export default { hooks: { responseFilter(resp) { delete resp.headers['content-length']; } } };\n");
  const lengthConfig = path.join(dir, 'length.mjs');
  writeFileSync(lengthConfig, 'export default { hooks: { responseFilter() {} } };\n');
  const [streamed, buffered, hits, chunkedHits, sweepStreamed, sweepBuffered] = await Promise.all([
    proxy(origin.url),
    proxy(origin.url, ['--no-stream']),
    proxy(fastOrigin.url, ['--config', lengthConfig]),
    proxy(fastOrigin.url, ['--config', chunkedConfig]),
    proxy(fastOrigin.url),
    proxy(fastOrigin.url, ['--stream-min-bytes', '1g']),
  ]);
  return {
    origin,
    fastOrigin,
    streamed: { url: streamed.url, label: 'streamed' },
    buffered,
    hits: { url: hits.url, label: 'content-length' },
    chunkedHits,
    sweepStreamed: { url: sweepStreamed.url, label: 'streamed' },
    sweepBuffered,
  };
}

async function timeRequest(url: string, dispatcher: Agent): Promise<{ ttfb: number; ttlb: number; status: number; bytes: number }> {
  const t0 = performance.now();
  const res = await request(url, { dispatcher });
  let ttfb: number | undefined;
  let bytes = 0;
  for await (const chunk of res.body) {
    ttfb ??= performance.now() - t0;
    bytes += (chunk as Buffer).length;
  }
  return { ttfb: ttfb ?? performance.now() - t0, ttlb: performance.now() - t0, status: res.statusCode, bytes };
}

/** An autocannon run of `s.seconds`; `p` ticks once a second (autocannon's own tick). */
function cannon(url: string, s: Scale, p: StepProgress = NO_PROGRESS): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const run = autocannon({ url, connections: s.connections, duration: s.seconds }, (err, res) => (err ? reject(err) : resolve(res)));
    run.on('tick', () => p.tick());
  });
}

const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;

/** Chunked vs buffered delivery of a miss from an origin sending chunks with a delay between them. */
export async function missTtfb(t: Targets, s: Scale, p: StepProgress = NO_PROGRESS): Promise<ScenarioRow[]> {
  const modes: Array<[string, string]> = [['direct', t.origin.url], [t.streamed.label, t.streamed.url]];
  if (t.buffered !== undefined) modes.push(['buffered', t.buffered.url]);
  p.begin(modes.length * s.runs, 'requests');
  const rows: ScenarioRow[] = [];
  const expectBytes = s.chunks * 64;
  for (const [mode, base] of modes) {
    const agent = new Agent({ connections: 2 });
    await timeRequest(`${base}/static/1`, agent);
    const ttfb: number[] = [];
    const ttlb: number[] = [];
    for (let i = 0; i < s.runs; i++) {
      const r = await timeRequest(`${base}/chunked?chunks=${s.chunks}&delay=${s.delayMs}&size=64&run=${mode}-${i}-${Date.now()}`, agent);
      if (r.status !== 200 || r.bytes !== expectBytes) throw new Error(`miss-ttfb ${mode}: status ${r.status}, ${r.bytes} bytes`);
      ttfb.push(r.ttfb);
      ttlb.push(r.ttlb);
      p.tick();
    }
    await agent.close();
    rows.push({ name: 'miss-ttfb', mode, ttfbMs: percentiles(ttfb), ttlbMs: percentiles(ttlb), ttfbSamplesMs: ttfb.map((v) => Math.round(v * 100) / 100) });
  }
  const direct = rows[0]?.ttfbMs?.p50 ?? NaN;
  for (const r of rows) r['ttfbDeltaVsDirectMs'] = Math.round(((r.ttfbMs?.p50 ?? NaN) - direct) * 100) / 100;
  return rows;
}

/** Hits with Content-Length vs chunked framing, beside the direct fast origin. */
export async function hitFraming(t: Targets, s: Scale, p: StepProgress = NO_PROGRESS): Promise<ScenarioRow[]> {
  const rows: ScenarioRow[] = [];
  const sizes = s.quick ? ['1k', '64k'] : ['1k', '64k', '1m'];
  p.begin(sizes.length * (t.chunkedHits === undefined ? 2 : 3) * s.seconds, 's of load');
  for (const size of sizes) {
    const path = `/static/${size}`;
    const modes: Array<[string, string]> = [['direct', t.fastOrigin.url], [t.hits.label, t.hits.url]];
    if (t.chunkedHits !== undefined) modes.push(['chunked', t.chunkedHits.url]);
    let directRps = NaN;
    for (const [mode, base] of modes) {
      await (await request(`${base}${path}`)).body.text();
      const r = await cannon(`${base}${path}`, s, p);
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`hit-framing ${mode} ${size}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      const row: ScenarioRow = {
        name: `hit-${size}`,
        mode,
        rps: Math.round(r.requests.average),
        latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99 },
      };
      if (mode === 'direct') directRps = row.rps ?? NaN;
      else row.ratioToDirect = ratio(row.rps ?? NaN, directRps);
      rows.push(row);
    }
  }
  return rows;
}

/** Hits under autocannon load, with streamed misses measured at the same time. */
export async function underLoad(t: Targets, s: Scale, p: StepProgress = NO_PROGRESS): Promise<ScenarioRow[]> {
  const hitUrl = `${t.sweepStreamed.url}/static/1k`;
  await (await request(hitUrl)).body.text();
  p.begin(s.seconds, 's of load');
  const load = cannon(hitUrl, s, p);
  const agent = new Agent({ connections: 2 });
  const ttfb: number[] = [];
  const deadline = performance.now() + s.seconds * 1000 - 300;
  let i = 0;
  while (performance.now() < deadline) {
    const r = await timeRequest(`${t.streamed.url}/chunked?chunks=2&delay=20&size=64&run=load-${i++}-${Date.now()}`, agent);
    if (r.status === 200) ttfb.push(r.ttfb);
  }
  const res = await load;
  await agent.close();
  return [
    {
      name: 'load',
      mode: t.hits.label === 'target' ? 'target' : 'streamed',
      connections: s.connections,
      rps: Math.round(res.requests.average),
      latencyMs: { p50: res.latency.p50, p90: res.latency.p90, p99: res.latency.p99 },
      ttfbMs: percentiles(ttfb),
      note: 'rps/latency: 1 KiB hits under load; ttfbMs: streamed misses issued during the load',
    },
  ];
}

/** N clients at once on one cold URL: origin requests and each client's TTFB. */
export async function coalesce(t: Targets, s: Scale, p: StepProgress = NO_PROGRESS): Promise<ScenarioRow[]> {
  const stats = async (): Promise<{ perPath: Record<string, number> }> =>
    (await (await request(`${t.origin.url}/stats`)).body.json()) as { perPath: Record<string, number> };
  const before = (await stats()).perPath['/chunked'] ?? 0;
  const agent = new Agent({ connections: s.coalesceClients + 10 });
  const url = `${t.streamed.url}/chunked?chunks=3&delay=50&size=64&first=delay&run=coalesce-${Date.now()}`;
  p.begin(s.coalesceClients, 'clients');
  const results = await Promise.all(
    Array.from({ length: s.coalesceClients }, async () => {
      const r = await timeRequest(url, agent);
      p.tick();
      return r;
    }),
  );
  await agent.close();
  const after = (await stats()).perPath['/chunked'] ?? 0;
  return [
    {
      name: 'coalesce',
      mode: t.streamed.label,
      clients: s.coalesceClients,
      originRequests: after - before,
      allComplete: results.every((r) => r.status === 200 && r.bytes === 192),
      ttfbMs: percentiles(results.map((r) => r.ttfb)),
    },
  ];
}

/** Adaptive streaming threshold sweep: misses of Content-Length objects, streamed vs delivered whole. */
export async function sweep(t: Targets, s: Scale, p: StepProgress = NO_PROGRESS): Promise<ScenarioRow[]> {
  const rows: ScenarioRow[] = [];
  const modes: Array<[string, string]> = [['direct', t.fastOrigin.url], [t.sweepStreamed.label, t.sweepStreamed.url]];
  if (t.sweepBuffered !== undefined) modes.push(['buffered', t.sweepBuffered.url]);
  p.begin(s.sweepSizes.length * modes.length * s.sweepRuns, 'requests');
  for (const size of s.sweepSizes) {
    for (const [mode, base] of modes) {
      const agent = new Agent({ connections: 1 });
      await timeRequest(`${base}/static/1?warm=${Date.now()}`, agent);
      const ttlb: number[] = [];
      const ttfb: number[] = [];
      for (let i = 0; i < s.sweepRuns; i++) {
        const r = await timeRequest(`${base}/static/${size}?sweep=${mode}-${i}-${Date.now()}`, agent);
        ttlb.push(r.ttlb);
        ttfb.push(r.ttfb);
        p.tick();
      }
      await agent.close();
      rows.push({ name: `sweep-${size}`, mode, size, ttfbMs: percentiles(ttfb), ttlbMs: percentiles(ttlb) });
    }
  }
  return rows;
}

export const SCENARIOS = {
  'miss-ttfb': missTtfb,
  'hit-framing': hitFraming,
  load: underLoad,
  coalesce,
  sweep,
} as const;

export type ScenarioName = keyof typeof SCENARIOS;
