import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { STAT_HELP, type Stats } from '../stats.js';
import type { Proxy } from './proxy.js';

/**
 * GET /metrics: the Prometheus text exposition format as prom-client writes it. Every metric has HELP and TYPE,
 * counters end in `_total`, names are snake_case with the `sluice_` prefix (the varnishstat name after it); request
 * duration and time to first byte are histograms by cache outcome; process and event-loop metrics use prom-client's
 * names, so dashboards made for Node services work.
 */
let loopDelay: IntervalHistogram | undefined;

export function prometheusText(proxy: Proxy): string {
  const snap = proxy.snapshot();
  const out: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge' | 'histogram', help: string, lines: string[]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
  };
  for (const [name, value] of Object.entries(snap.main)) {
    metric(`sluice_${name}_total`, 'counter', STAT_HELP[name as keyof Stats], [`sluice_${name}_total ${value}`]);
  }
  metric('sluice_storage_bytes', 'gauge', 'Bytes charged to the cache storage', [`sluice_storage_bytes ${snap.storage.bytes}`]);
  metric('sluice_storage_max_bytes', 'gauge', 'The cache storage budget', [`sluice_storage_max_bytes ${snap.storage.maxBytes}`]);
  metric('sluice_objects', 'gauge', 'Objects in the cache (MAIN.n_object)', [`sluice_objects ${snap.storage.objects}`]);
  backendMetrics(snap.backends, metric);
  metric('sluice_request_duration_seconds', 'histogram', 'Client request duration, from the request head to the last byte sent, by cache outcome', proxy.durations.lines('sluice_request_duration_seconds'));
  metric('sluice_ttfb_seconds', 'histogram', 'Time from the request head to the response head handed to the socket, by cache outcome', proxy.ttfb.lines('sluice_ttfb_seconds'));
  processMetrics(metric);
  return `${out.join('\n')}\n`;
}

type Emit = (name: string, type: 'counter' | 'gauge' | 'histogram', help: string, lines: string[]) => void;

/** The origin client's per-backend counters (VBE.*), labelled by backend. */
function backendMetrics(backends: ReadonlyArray<Record<string, string | number | boolean>>, metric: Emit): void {
  const names = new Set<string>();
  for (const b of backends) for (const k of Object.keys(b)) if (typeof b[k] === 'number' || typeof b[k] === 'boolean') names.add(k);
  for (const k of names) {
    const gauge = k === 'healthy' || k === 'active' || k === 'inflight' || k === 'queued' || k === 'pinned';
    const name = `sluice_backend_${snake(k)}${gauge ? '' : '_total'}`;
    const lines: string[] = [];
    for (const b of backends) {
      const v = b[k];
      if (v === undefined) continue;
      const label = String(b['name'] ?? '').replace(/["\\\n]/g, '_');
      lines.push(`${name}{backend="${label}"} ${typeof v === 'boolean' ? (v ? 1 : 0) : Number(v)}`);
    }
    metric(name, gauge ? 'gauge' : 'counter', `Backend ${k} (VBE.<backend>.${k})`, lines);
  }
}

/** prom-client's process and Node.js metrics, by the same names. */
function processMetrics(metric: Emit): void {
  if (loopDelay === undefined) {
    loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
  }
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  metric('process_cpu_user_seconds_total', 'counter', 'Total user CPU time spent in seconds.', [`process_cpu_user_seconds_total ${cpu.user / 1e6}`]);
  metric('process_cpu_system_seconds_total', 'counter', 'Total system CPU time spent in seconds.', [`process_cpu_system_seconds_total ${cpu.system / 1e6}`]);
  metric('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', [`process_resident_memory_bytes ${mem.rss}`]);
  metric('process_start_time_seconds', 'gauge', 'Start time of the process since unix epoch in seconds.', [`process_start_time_seconds ${Math.round(Date.now() / 1000 - process.uptime())}`]);
  metric('nodejs_heap_size_used_bytes', 'gauge', 'Process heap size used from Node.js in bytes.', [`nodejs_heap_size_used_bytes ${mem.heapUsed}`]);
  metric('nodejs_external_memory_bytes', 'gauge', 'Node.js external memory size in bytes.', [`nodejs_external_memory_bytes ${mem.external}`]);
  const lag = loopDelay.count > 0 ? loopDelay.mean / 1e9 : 0;
  metric('nodejs_eventloop_lag_mean_seconds', 'gauge', 'The mean of the recorded event loop delays.', [`nodejs_eventloop_lag_mean_seconds ${lag}`]);
  metric('nodejs_eventloop_lag_p99_seconds', 'gauge', 'The 99th percentile of the recorded event loop delays.', [`nodejs_eventloop_lag_p99_seconds ${loopDelay.count > 0 ? loopDelay.percentile(99) / 1e9 : 0}`]);
}

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
