import { Command, Flags } from '@oclif/core';
import { adminCall, adminTarget } from '../admin-client.js';

interface Snapshot {
  main: Record<string, number>;
  storage: { bytes: number; objects: number; maxBytes: number };
  backends: Array<Record<string, string | number | boolean>>;
}

export const adminFlags = {
  admin: Flags.string({ summary: 'Admin API of a running proxy (default http://127.0.0.1:6082, or SLUICE_ADMIN). e.g. --admin http://127.0.0.1:6082', helpValue: 'URL' }),
  token: Flags.string({ summary: 'Admin token (or SLUICE_ADMIN_TOKEN). e.g. --token s3cret-token', helpValue: 'TOKEN' }),
};

/** varnishstat-like lines: name, value, and per-second rate since the previous sample when watching. */
export function formatStats(s: Snapshot, prev?: Snapshot, seconds?: number): string {
  const lines: string[] = [];
  const rate = (k: string, v: number): string => (prev === undefined || seconds === undefined ? '' : ` ${(((v - (prev.main[k] ?? 0)) / seconds) || 0).toFixed(1).padStart(10)}/s`);
  for (const [k, v] of Object.entries(s.main)) lines.push(`MAIN.${k.padEnd(24)} ${String(v).padStart(12)}${rate(k, v)}`);
  lines.push(`SMA.bytes${' '.repeat(20)} ${String(s.storage.bytes).padStart(12)}`);
  lines.push(`SMA.max_bytes${' '.repeat(16)} ${String(s.storage.maxBytes).padStart(12)}`);
  lines.push(`MAIN.n_object${' '.repeat(16)} ${String(s.storage.objects).padStart(12)}`);
  for (const b of s.backends) {
    for (const [k, v] of Object.entries(b)) {
      if (k === 'name' || k === 'url') continue;
      lines.push(`VBE.${String(b['name'])}.${k}`.padEnd(29) + ` ${String(v).padStart(12)}`);
    }
  }
  return lines.join('\n');
}

export default class StatsCommand extends Command {
  static override summary = "Print a running proxy's counters (varnishstat-style), once or refreshing.";
  static override description = 'Reads GET /stats from the admin API. Counter names follow varnishstat (MAIN.cache_hit, MAIN.busy_sleep, ...); per-backend counters come as VBE.<backend>.<counter>. The admin API also serves the same counters in Prometheus format at /metrics.';
  static override examples = [
    '<%= config.bin %> stats --token s3cret-token',
    '<%= config.bin %> stats --admin http://10.0.0.5:6082 --json',
    '<%= config.bin %> stats --watch 2',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...adminFlags,
    watch: Flags.integer({ summary: 'Refresh every N seconds until interrupted, with rates. e.g. --watch 1', helpValue: 'SECONDS', min: 1 }),
  };

  async run(): Promise<Snapshot> {
    const { flags } = await this.parse(StatsCommand);
    const t = adminTarget(flags);
    let snap = (await adminCall(t, 'GET', '/stats')) as Snapshot;
    this.log(formatStats(snap));
    if (flags.watch !== undefined && !this.jsonEnabled()) {
      for (;;) {
        await new Promise((r) => setTimeout(r, (flags.watch as number) * 1000));
        const next = (await adminCall(t, 'GET', '/stats')) as Snapshot;
        this.log(`\n${new Date().toISOString()}\n${formatStats(next, snap, flags.watch)}`);
        snap = next;
      }
    }
    return snap;
  }
}
