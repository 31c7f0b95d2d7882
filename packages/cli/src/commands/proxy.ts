import { once } from 'node:events';
import { Command, Flags } from '@oclif/core';
import type { Proxy } from '@sluice/core';
import { policyOf, restartOnly } from '../compose.js';
import { loadConfigFile, toConfig } from '../config.js';
import { size } from '../config-values.js';
import { adminListenFlags, proxyFlags } from '../flags.js';
import { heapGrowingPercent, mallocKeepsFreedMemory, noWasmTierUp, startYoungGc } from '../runtime-memory.js';
import { serve, signalSequence } from '../serve.js';

export default class ProxyCommand extends Command {
  static override summary = 'Run the caching, streaming reverse proxy.';
  static override description = [
    "Serves clients on --listen and forwards to the --backend origins (round-robin when several are given), caching per RFC 9111 with Varnish's builtin request policy: GET/HEAD looked up, other methods passed (a successful one invalidates the URL), requests with Authorization or Cookie passed, uncacheable responses remembered as hit-for-miss. The cache defaults are RFC-strict (no default TTL, no grace, expired objects kept a day for revalidation); --profile varnish gives Varnish's (default TTL 120s, grace 10s, keep 0s).",
    'Sizes accept units (1048576, 512k, 256MB); durations too (90, 500ms, 10s, 2m, 1h).',
    'A --config module default-exports { listen, backends, director, directors, connectAllow, adminListen, adminToken, purgeAllow, storage, profile, defaultTtl, grace, keep, hitForMissTtl, transitBuffer, streamMinBytes, maxRanges, maxRestarts, maxRetries, stream, hooks }; flags override it. On SIGINT/SIGTERM stops accepting and lets responses in flight finish (--shutdown-timeout); a second signal stops at once.',
  ].join('\n\n');

  // --backend is required unless the --config file lists backends: two usage lines say so (oclif's `required` cannot).
  static override usage = ['<%= command.id %> --backend URL... [FLAGS]', '<%= command.id %> --config FILE [FLAGS]'];

  static override examples = [
    '<%= config.bin %> proxy --listen 127.0.0.1:6081 --backend http://127.0.0.1:8080',
    '<%= config.bin %> proxy --backend http://10.0.0.1:80 --backend http://10.0.0.2:80 --storage 1GB',
    '<%= config.bin %> proxy --backend http://127.0.0.1:8080 --default-ttl 2m --grace 30s',
    '<%= config.bin %> proxy --backend http://127.0.0.1:8080 --profile varnish',
    '<%= config.bin %> proxy --backend http://10.0.0.1:80 --backend http://10.0.0.2:80 --director shard',
    '<%= config.bin %> proxy --config ./sluice.config.ts',
  ];

  static override flags = {
    ...proxyFlags,
    director: Flags.string({
      summary: 'How requests are spread over several backends (default round-robin). e.g. --director shard',
      options: ['round-robin', 'random', 'hash', 'shard', 'fallback'],
    }),
    ...adminListenFlags,
    'purge-allow': Flags.string({
      summary: 'Address allowed to send the PURGE method (repeatable); none by default. e.g. --purge-allow 127.0.0.1',
      helpValue: 'IP',
      multiple: true,
    }),
    'connect-allow': Flags.string({
      summary: 'Allow CONNECT tunnels to this host:port (repeatable; * and *.domain work); none allowed by default. e.g. --connect-allow *.example.com:443',
      helpValue: 'HOST:PORT',
      multiple: true,
    }),
    'young-gc': Flags.string({
      summary:
        "Run V8's young-generation GC after this many body bytes of pass (unstored) responses were sent (at most every 20 ms), so the 64 KiB socket read buffers they came in are freed within about SIZE instead of V8's 32 MiB (default 4MB; 0 leaves it to V8). e.g. --young-gc 8MB",
      helpValue: 'SIZE',
    }),
    'heap-growing': Flags.integer({
      summary:
        "V8's old-generation growing factor after a full GC, as a percentage (1 + N/100; V8 caps it at 4): kept body bytes count against that limit, so a stored miss ran a full GC per ~25-30 MiB of body with V8's own (default 300: about one per 65 MiB; 0 leaves it to V8). e.g. --heap-growing 100",
      helpValue: 'PERCENT',
      min: 0,
    }),
    'wasm-tier-up': Flags.boolean({
      summary:
        "Let V8 recompile undici's llhttp parser (WebAssembly) with TurboFan once hot: ~35 MiB of compiler memory at the peak, most of it kept by the allocator (default off: llhttp stays on Liftoff).",
      default: false,
    }),
    backend: Flags.string({
      summary: 'Origin server URL; required unless the --config file lists backends. Repeat for several (round-robin). e.g. --backend http://127.0.0.1:8080',
      helpValue: 'URL',
      multiple: true,
    }),
  };

  async run(): Promise<{ url: string }> {
    const { flags } = await this.parse(ProxyCommand);
    const file = flags.config === undefined ? {} : await loadConfigFile(flags.config);
    const config = toConfig(flags, file);
    const youngGcBytes = size('--young-gc', flags['young-gc'], 4 * 1024 * 1024);
    // Before the first origin connection compiles llhttp (runtime-memory.ts: why, and what it costs).
    if (!flags['wasm-tier-up']) noWasmTierUp();
    const growing = flags['heap-growing'] ?? 300;
    if (growing > 0) heapGrowingPercent(growing);
    // Freed socket read buffers stay mapped for the next reads instead of being trimmed and faulted in again.
    mallocKeepsFreedMemory();
    // Reload (SIGHUP, or POST /reload on the admin API): the config file read again, its hooks and cache settings
    // applied to new requests; the cache stays. A file that fails to load leaves the running configuration as it is.
    const holder: { proxy?: Proxy } = {};
    const reload = async (): Promise<string> => {
      if (flags.config === undefined) throw new Error('no --config file to reload');
      const next = toConfig(flags, await loadConfigFile(flags.config));
      holder.proxy?.reconfigure(policyOf(next));
      const fixed = restartOnly(config, next);
      return `reloaded ${flags.config}${fixed.length > 0 ? `; a restart is needed to change ${fixed.join(', ')}` : ''}`;
    };
    const youngGc = startYoungGc({ everyBytes: youngGcBytes });
    const running = await serve(config, (l) => process.stderr.write(`${l}\n`), {
      reload: flags.config === undefined ? undefined : reload,
      onTransitBytes: youngGcBytes > 0 ? (n) => youngGc.note(n) : undefined,
    });
    holder.proxy = running.proxy;
    process.on('SIGHUP', () => {
      reload().then(
        (line) => this.log(`sluice: SIGHUP, ${line}`),
        (e: unknown) => this.log(`sluice: SIGHUP, reload failed, the running configuration stays: ${e instanceof Error ? e.message : String(e)}`),
      );
    });
    this.log(`sluice: listening on ${running.url}, backends ${config.backends.map((b) => b.url).join(', ')}`);
    if (running.adminUrl !== undefined) {
      this.log(`sluice: admin API on ${running.adminUrl}${running.adminToken === undefined ? '' : ` (generated token: ${running.adminToken})`}`);
    }
    const signals = signalSequence();
    const sig = await signals.first;
    this.log(`sluice: ${sig}, finishing the responses in flight (at most ${config.shutdownTimeoutSec}s; signal again to stop now)`);
    // A second signal stops at once, as nginx's fast shutdown after a graceful one: the connections still open are
    // cut (a hang-up their clients see) and their requests end, the log is written (at most ~2 s: compose.ts
    // LOG_END_MS), then exit 1. Before, process.exit(1) came first and the cut requests were never logged.
    void signals.second.then(async (again) => {
      process.exitCode = 1;
      this.log(`sluice: ${again} again, stopping now`);
      setTimeout(() => process.exit(1), 5000).unref();
      await running.close().catch(() => undefined);
      process.exit(1);
    });
    const { cut } = await running.shutdown(config.shutdownTimeoutSec * 1000);
    youngGc.stop();
    this.log(`sluice: stopped${cut > 0 ? ` (${cut} connection${cut === 1 ? '' : 's'} cut at the deadline)` : ''}`);
    // A stdout pipe nobody reads (--log to stdout) would hold the exit: oclif's flush gave up after 10 s with
    // "timed out" and exit 2. What stdout still holds after 2 s is left unwritten, and the stop exits 0.
    if (process.stdout.writableLength > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([once(process.stdout, 'drain'), new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      if (process.stdout.writableLength > 0) process.exit(0);
    }
    return { url: running.url };
  }
}
