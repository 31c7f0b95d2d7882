import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Flags } from '@oclif/core';
import { CliError } from '../errors.js';
import { Progress, progressWanted } from '../progress.js';
import { machine, ProcessGroup } from '../bench/processes.js';
import { formatBenchTable, renderHtml, type BenchResult } from '../bench/report.js';
import { terminalWidth } from '../table.js';
import { SCENARIOS, scaleFor, startTargets, type ScenarioName, type ScenarioRow } from '../bench/scenarios.js';

export default class BenchCommand extends Command {
  static override summary = 'Measure streaming vs buffering, hit framing, load, coalescing and the adaptive threshold.';
  static override description = [
    'Starts the fixture origins and the Sluice instances it needs (each in its own process), runs the scenarios with undici and autocannon from this process, and reports time to first/last byte (p50/p90/p99), requests/s and ratios to the same-run direct-to-origin baseline.',
    'Scenarios: miss-ttfb (a miss from an origin sending chunks with a delay: direct, streamed, buffered), hit-framing (hits of 1 KiB/64 KiB/1 MiB with Content-Length vs chunked, beside direct), load (hits under autocannon load while streamed misses are timed), coalesce (N clients on one cold URL: origin requests, TTFB), sweep (misses of 100 B to 1 MiB, streamed vs delivered whole).',
    'With --target URL the scenarios run against any proxy instead (configure it to forward to the fixture origin on --origin-port; its buffered and chunked modes are skipped).',
  ].join('\n\n');

  static override examples = [
    '<%= config.bin %> bench --quick',
    '<%= config.bin %> bench --json > result.json',
    '<%= config.bin %> bench --html report.html --out bench/results/run.json',
    '<%= config.bin %> bench --scenario miss-ttfb --scenario coalesce',
    '<%= config.bin %> bench --target http://127.0.0.1:8080 --origin-port 9100',
  ];

  static override enableJsonFlag = true;

  static override flags = {
    quick: Flags.boolean({ summary: 'Every scenario at a tiny scale (seconds). e.g. --quick' }),
    scenario: Flags.string({
      summary: 'Run only this scenario; repeatable. e.g. --scenario coalesce',
      options: Object.keys(SCENARIOS),
      multiple: true,
    }),
    target: Flags.string({ summary: 'Measure this proxy instead of starting Sluice. e.g. --target http://127.0.0.1:8080', helpValue: 'URL' }),
    'origin-port': Flags.integer({ summary: 'Port for the fixture origin (the fast origin takes the next one); 0 picks free ports. e.g. --origin-port 9100', default: 0, min: 0, max: 65534 }),
    connections: Flags.integer({ summary: 'Concurrent connections for autocannon runs. e.g. --connections 64', default: 32, min: 1 }),
    html: Flags.string({ summary: 'Write a self-contained HTML page with charts. e.g. --html report.html', helpValue: 'FILE' }),
    out: Flags.string({ summary: 'Also write the JSON result to a file. e.g. --out bench/results/today.json', helpValue: 'FILE' }),
    progress: Flags.boolean({
      summary: 'Progress on stderr within each scenario (a counter with an ETA): on by default when stderr is a terminal, --progress forces it (a line per tenth), --no-progress turns it off. e.g. --progress',
      allowNo: true,
    }),
  };

  async run(): Promise<BenchResult> {
    const { flags } = await this.parse(BenchCommand);
    if (flags.target !== undefined && !/^https?:\/\//.test(flags.target)) {
      throw new CliError('CLI_ERR_FLAG_INVALID', `--target: "${flags.target}" is not an http(s) URL (example: http://127.0.0.1:8080)`);
    }
    const names = (flags.scenario ?? Object.keys(SCENARIOS)) as ScenarioName[];
    const scale = scaleFor(flags.quick, flags.connections);
    const group = new ProcessGroup();
    // stderr only, so --json's stdout stays one JSON document.
    const progress = new Progress(process.stderr, progressWanted(flags.progress), process.stderr.isTTY === true);
    const rows: ScenarioRow[] = [];
    const startedAt = new Date().toISOString();
    const m = machine();
    try {
      progress.note('starting origins and proxies ...');
      const targets = await startTargets(group, flags.target, flags['origin-port']);
      for (const [i, name] of names.entries()) {
        const label = `[${i + 1}/${names.length}] ${name}`;
        rows.push(...(await SCENARIOS[name](targets, scale, { begin: (total, unit) => progress.begin(label, total, unit), tick: (n) => progress.tick(n) })));
        progress.end();
      }
    } finally {
      await group.stopAll();
    }
    const result: BenchResult = { date: startedAt, quick: flags.quick, target: flags.target ?? null, machine: m, scenarios: rows };
    if (flags.out !== undefined) {
      mkdirSync(path.dirname(path.resolve(flags.out)), { recursive: true });
      writeFileSync(flags.out, `${JSON.stringify(result, null, 2)}\n`);
    }
    if (flags.html !== undefined) writeFileSync(flags.html, renderHtml(result));
    this.log(formatBenchTable(result, terminalWidth()));
    if (flags.html !== undefined) this.log(`\nHTML report: ${flags.html}`);
    return result;
  }
}
