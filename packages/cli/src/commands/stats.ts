import { Command, Flags } from '@oclif/core';
import { adminCall, adminTarget } from '../admin-client.js';
import { formatStats, type Snapshot } from '../stats-format.js';
import { terminalWidth } from '../table.js';

export { formatStats } from '../stats-format.js';

export const adminFlags = {
  admin: Flags.string({ summary: 'Admin API of a running proxy (default http://127.0.0.1:6082, or SLUICE_ADMIN). e.g. --admin http://127.0.0.1:6082', helpValue: 'URL' }),
  token: Flags.string({ summary: 'Admin token (or SLUICE_ADMIN_TOKEN). e.g. --token s3cret-token', helpValue: 'TOKEN' }),
};

export default class StatsCommand extends Command {
  static override summary = "Print a running proxy's counters (varnishstat-style), once or refreshing.";
  static override description = 'Reads GET /stats from the admin API. Counter names follow varnishstat (MAIN.cache_hit, MAIN.busy_sleep, ...); per-backend counters come as VBE.<backend>.<counter>. The admin API also serves the same counters in Prometheus format at /metrics.';
  static override examples = [
    '<%= config.bin %> stats --token s3cret-token',
    '<%= config.bin %> stats --admin http://10.0.0.5:6082 --json',
    '<%= config.bin %> stats --watch 2',
    "<%= config.bin %> stats -f 'MAIN.cache_*' -f 'VBE.*'          # only these counters (globs; ^glob excludes)",
    '<%= config.bin %> stats --watch 1 --json                     # one JSON object per line (NDJSON)',
  ];
  static override enableJsonFlag = true;
  static override flags = {
    ...adminFlags,
    watch: Flags.integer({ summary: 'Refresh every N seconds until interrupted, with rates (redrawn in place on a terminal; with --json, one object per line). e.g. --watch 1', helpValue: 'SECONDS', min: 1 }),
    filter: Flags.string({ char: 'f', summary: "Only counters matching this glob (repeatable; a leading ^ excludes), as varnishstat -f. e.g. -f 'MAIN.cache_*'", helpValue: 'GLOB', multiple: true }),
  };

  async run(): Promise<Snapshot> {
    const { flags } = await this.parse(StatsCommand);
    const t = adminTarget(flags);
    const filter = flags.filter ?? [];
    let snap = (await adminCall(t, 'GET', '/stats')) as Snapshot;
    if (flags.watch === undefined) {
      if (!this.jsonEnabled()) this.log(formatStats(snap, { filter, width: terminalWidth() }));
      return snap;
    }
    const tty = process.stdout.isTTY === true && !this.jsonEnabled();
    const show = (next: Snapshot, prev?: Snapshot): void => {
      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...next })}\n`);
      else if (tty) process.stdout.write(`\x1b[2J\x1b[H${new Date().toISOString()}\n${formatStats(next, { prev, seconds: flags.watch, filter, width: terminalWidth() })}\n`);
      else this.log(`${new Date().toISOString()}\n${formatStats(next, { prev, seconds: flags.watch, filter })}\n`);
    };
    show(snap);
    for (;;) {
      await new Promise((r) => setTimeout(r, (flags.watch as number) * 1000));
      const next = (await adminCall(t, 'GET', '/stats')) as Snapshot;
      show(next, snap);
      snap = next;
    }
  }
}
