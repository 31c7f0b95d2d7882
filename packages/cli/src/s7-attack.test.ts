import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, CLI_ENV } from './test-support/run-cli.js';

/**
 * Session 7's outside attack on the `sluice proxy` process itself (not core in a test worker): signals while clients
 * are mid-body, a burst of requests with the transaction log on (file, stdout through a pipe nobody reads, a FIFO
 * nobody reads), and the runtime flags the CLI sets at start. Every test spawns `bin/run.js proxy` as a child and
 * talks HTTP to it on loopback; assertions are on bytes, counts, statuses and exit codes, never on time.
 */

const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-s7-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function origin(handler: Handler): Promise<{ url: string; close(): Promise<void> }> {
  const s = http.createServer({ maxHeaderSize: 256 * 1024 }, handler);
  s.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: () => {
      s.closeAllConnections();
      return new Promise<void>((r) => s.close(() => r()));
    },
  };
}

interface Px {
  p: ChildProcess;
  url: URL;
  admin: URL | undefined;
  /** stderr, and stdout unless stdout is left unread. */
  out: () => string;
  exited: Promise<number | null>;
}

const TOKEN = 's7-attack-token';

/** `sluice proxy` as a child; `pauseStdout` stops reading its stdout pipe once it is listening (nobody reads it after). */
function startProxy(backend: string, extra: string[] = [], opts: { pauseStdout?: boolean } = {}): Promise<Px> {
  const p = spawn(process.execPath, [BIN, 'proxy', '--backend', backend, '--listen', '127.0.0.1:0', '--quiet', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: CLI_ENV,
  });
  let out = '';
  const onOut = (d: Buffer): void => {
    out += String(d);
  };
  p.stdout?.on('data', onOut);
  p.stderr?.on('data', onOut);
  const exited = new Promise<number | null>((r) =>
    p.on('exit', (code, sig) => {
      // a death by signal shows in the output the test prints on failure
      if (sig !== null) out += `\n[killed by ${sig}]`;
      r(code);
    }),
  );
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      const needAdmin = extra.includes('--admin-listen');
      const a = /admin API on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m !== null && (!needAdmin || a !== null)) {
        clearInterval(t);
        if (opts.pauseStdout === true) {
          p.stdout?.off('data', onOut);
          p.stdout?.pause();
        }
        resolve({ p, url: new URL(m[1] as string), admin: a === null ? undefined : new URL(a[1] as string), out: () => out, exited });
      }
    }, 10);
    void exited.then((code) => {
      clearInterval(t);
      reject(new Error(`proxy exited ${String(code)}: ${out}`));
    });
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never: ${what}`);
}

/**
 * A GET on a raw socket. `pauseAfter`: stop reading once that many bytes arrived (the kernel buffers fill and the
 * proxy is left mid-body) until `resume()`. `all` resolves with every byte once the proxy closes.
 */
function rawGet(url: URL, pathname: string, opts: { headers?: string; pauseAfter?: number } = {}): { got: () => number; all: Promise<Buffer>; resume(): void; started: Promise<void> } {
  const sock = net.connect(Number(url.port), url.hostname);
  const chunks: Buffer[] = [];
  let n = 0;
  let paused = false;
  let startedResolve: () => void = () => undefined;
  const started = new Promise<void>((r) => (startedResolve = r));
  sock.on('data', (d: Buffer) => {
    chunks.push(d);
    n += d.length;
    startedResolve();
    if (!paused && opts.pauseAfter !== undefined && n >= opts.pauseAfter) {
      paused = true;
      sock.pause();
    }
  });
  sock.on('error', () => undefined);
  const all = new Promise<Buffer>((r) => sock.on('close', () => r(Buffer.concat(chunks))));
  sock.write(`GET ${pathname} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${opts.headers ?? ''}\r\n`);
  return { got: () => n, all, resume: () => sock.resume(), started };
}

/** Head and body of a raw response; `complete` says whether the body is all its framing announced. */
function parse(raw: Buffer): { status: number; head: string; body: Buffer; complete: boolean } {
  const i = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, i).toString('latin1');
  const body = raw.subarray(i + 4);
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]);
  const cl = /\r\ncontent-length: (\d+)/i.exec(head);
  if (cl !== null) return { status, head, body, complete: body.length === Number(cl[1]) };
  // chunked: complete when the last-chunk and the final CRLF arrived
  return { status, head, body, complete: body.subarray(-5).toString('latin1') === '0\r\n\r\n' };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An origin streaming `parts` chunks `gapMs` apart; cacheable unless the path starts with /p. */
function streamingOrigin(parts: number, gapMs: number): Promise<{ url: string; close(): Promise<void> }> {
  return origin((req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' });
    let i = 0;
    const next = (): void => {
      if (res.destroyed) return;
      if (i === parts) return void res.end();
      res.write(`part${i++};`);
      setTimeout(next, gapMs);
    };
    next();
  });
}

const BIG = 16 * 1024 * 1024;
const bigBody = Buffer.alloc(BIG, 'b');
function bigOrigin(): Promise<{ url: string; close(): Promise<void> }> {
  return origin((req, res) => {
    res.writeHead(200, { 'content-length': BIG, 'cache-control': 'max-age=600' });
    res.end(bigBody);
  });
}

function ndjsonUrls(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const g = JSON.parse(l) as { records: Array<[string, string]> };
      return g.records.find((r) => r[0] === 'ReqURL')?.[1] ?? '';
    });
}

describe('s7: a signal while clients are mid-body (the sluice process)', () => {
  it('SIGTERM during a streamed miss: the body ends whole, new connections are refused, exit 0, the group is in the log file', async () => {
    const o = await streamingOrigin(6, 60);
    const log = path.join(dir, 'sig-miss.ndjson');
    const px = await startProxy(o.url, ['--log', 'ndjson', '--log-file', log]);
    const c = rawGet(px.url, '/miss');
    await c.started;
    px.p.kill('SIGTERM');
    await until(() => px.out().includes('SIGTERM, finishing'), 'the drain message');
    const refused = await new Promise<string>((r) => {
      const s = net.connect(Number(px.url.port), px.url.hostname);
      s.on('connect', () => r('connected'));
      s.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
    const res = parse(await c.all);
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.body.toString()).toContain('part5;');
    expect(await px.exited).toBe(0);
    expect(ndjsonUrls(log)).toEqual(['/miss']);
    await o.close();
  });

  it('SIGTERM during a 16 MiB hit to a client that stopped reading: once it reads again it gets every byte, exit 0', async () => {
    const o = await bigOrigin();
    const px = await startProxy(o.url);
    const warm = parse(await rawGet(px.url, '/big').all);
    expect(warm.complete).toBe(true);
    const c = rawGet(px.url, '/big', { pauseAfter: 1 });
    await c.started;
    px.p.kill('SIGTERM');
    await until(() => px.out().includes('SIGTERM, finishing'), 'the drain message');
    c.resume();
    const res = parse(await c.all);
    expect(res.head).toMatch(/cache-status: sluice; hit/i);
    expect(res.body.length).toBe(BIG);
    expect(res.complete).toBe(true);
    expect(await px.exited).toBe(0);
    await o.close();
  });

  it('SIGINT during a pass (Authorization): the body ends whole, exit 0', async () => {
    const o = await streamingOrigin(6, 60);
    const px = await startProxy(o.url);
    const c = rawGet(px.url, '/pass', { headers: 'Authorization: Basic eDp5\r\n' });
    await c.started;
    px.p.kill('SIGINT');
    const res = parse(await c.all);
    expect(res.status).toBe(200);
    expect(res.head).not.toMatch(/cache-status: sluice; hit/i);
    expect(res.complete).toBe(true);
    expect(res.body.toString()).toContain('part5;');
    expect(await px.exited).toBe(0);
    expect(px.out()).toMatch(/SIGINT, finishing the responses in flight/);
    await o.close();
  });

  it('SIGTERM twice during a 16 MiB hit: the client sees fewer bytes than Content-Length (a hang-up), exit 1, and the cut request is in the log file', async () => {
    const o = await bigOrigin();
    const log = path.join(dir, 'sig-twice.ndjson');
    const px = await startProxy(o.url, ['--log', 'ndjson', '--log-file', log]);
    expect(parse(await rawGet(px.url, '/big').all).complete).toBe(true);
    const c = rawGet(px.url, '/big-cut', { pauseAfter: 1 });
    await c.started;
    px.p.kill('SIGTERM');
    await until(() => px.out().includes('SIGTERM, finishing'), 'the drain message');
    px.p.kill('SIGTERM');
    const code = await px.exited;
    expect(px.out()).not.toMatch(/killed by/);
    expect(code).toBe(1);
    c.resume();
    const res = parse(await c.all);
    expect(res.complete).toBe(false);
    expect(res.body.length).toBeLessThan(BIG);
    expect(px.out()).toMatch(/SIGTERM again, stopping now/);
    expect(ndjsonUrls(log).sort()).toEqual(['/big', '/big-cut']);
    await o.close();
  });

  it('a response cut at --shutdown-timeout: chunked without its terminator, exit 0, and its group is in the log file', async () => {
    const o = await streamingOrigin(1000, 50);
    const log = path.join(dir, 'sig-deadline.ndjson');
    const px = await startProxy(o.url, ['--log', 'ndjson', '--log-file', log, '--shutdown-timeout', '300ms']);
    const c = rawGet(px.url, '/long');
    await c.started;
    px.p.kill('SIGTERM');
    const res = parse(await c.all);
    expect(res.complete).toBe(false);
    expect(await px.exited).toBe(0);
    expect(px.out()).toMatch(/1 connection cut at the deadline/);
    expect(ndjsonUrls(log)).toEqual(['/long']);
    await o.close();
  });
});

/** Resident memory of a process, bytes. */
function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
}

/**
 * `n` GETs over `conc` keep-alive connections: even ones to a cacheable /hit (hits after the first), odd ones to
 * uncacheable /p<k> (misses, hit-for-miss after). Each must answer 200 within `stallMs` (a bound on a stalled
 * request, not a measurement). Resolves with how many answered 200.
 */
async function burst(url: URL, n: number, opts: { conc?: number; stallMs?: number; headers?: Record<string, string> } = {}): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.conc ?? 8 });
  let next = 0;
  let ok = 0;
  const one = (p: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const rq = http.get(new URL(p, url), { agent, headers: opts.headers }, (r) => {
        r.resume();
        r.on('end', () => resolve(r.statusCode ?? 0));
      });
      rq.setTimeout(opts.stallMs ?? 30_000, () => rq.destroy(new Error(`request ${p} stalled`)));
      rq.on('error', reject);
    });
  await Promise.all(
    Array.from({ length: opts.conc ?? 8 }, async () => {
      while (next < n) {
        const k = next++;
        if ((await one(k % 2 === 0 ? '/hit' : `/p${k}`)) === 200) ok++;
      }
    }),
  );
  agent.destroy();
  return ok;
}

function smallOrigin(): Promise<{ url: string; close(): Promise<void> }> {
  const body = Buffer.alloc(1024, 'x');
  return origin((req, res) => {
    res.writeHead(200, { 'content-length': body.length, 'cache-control': req.url === '/hit' ? 'max-age=600' : 'no-store' });
    res.end(body);
  });
}

/** The request groups of a text log: blocks starting `*   << Request  >>`, each checked to end with its End record. */
function textGroups(text: string): { groups: number; complete: number; urls: string[] } {
  const blocks = text.split('\n\n').filter((b) => b.trim() !== '');
  let complete = 0;
  const urls: string[] = [];
  for (const b of blocks) {
    const lines = b.split('\n').filter((l) => l !== '');
    // every transaction of the group (the request, its fetch) ends with End
    const begins = lines.filter((l) => /^\*+\s+<< /.test(l)).length;
    const ends = lines.filter((l) => /^-+\s+End\s*$/.test(l)).length;
    if (/^\*   << Request  >>/.test(lines[0] ?? '') && begins === ends) complete++;
    urls.push(/^-   ReqURL\s+(\S+)/m.exec(b)?.[1] ?? '');
  }
  return { groups: blocks.length, complete, urls };
}

async function stats(px: Px): Promise<Record<string, number>> {
  const r = await fetch(new URL('/stats', px.admin), { headers: { authorization: `Bearer ${TOKEN}` } });
  return ((await r.json()) as { main: Record<string, number> }).main;
}

const N = 10_000;
/** What 10 000 requests may add to the proxy's RSS with the log on (measured: see the test names). */
const RSS_BOUND = 64 * 1024 * 1024;

describe('s7: 10 000 requests with the transaction log on (the sluice process)', () => {
  for (const format of ['text', 'ndjson'] as const) {
    it(`--log ${format} --log-file: every group complete in the file after SIGTERM, RSS growth under 64 MiB`, { timeout: 240_000 }, async () => {
      const o = await smallOrigin();
      const log = path.join(dir, `burst.${format}`);
      const px = await startProxy(o.url, ['--log', format, '--log-file', log]);
      expect(await burst(px.url, 200)).toBe(200);
      const rss0 = rssOf(px.p.pid as number);
      expect(await burst(px.url, N)).toBe(N);
      const grew = rssOf(px.p.pid as number) - rss0;
      console.log(`s7 burst --log ${format} --log-file: RSS ${(rss0 / 2 ** 20).toFixed(1)} MiB + ${(grew / 2 ** 20).toFixed(1)} MiB over ${N} requests`);
      px.p.kill('SIGTERM');
      expect(await px.exited).toBe(0);
      expect(grew).toBeLessThan(RSS_BOUND);
      if (format === 'text') {
        const g = textGroups(readFileSync(log, 'utf8'));
        expect(g.groups).toBe(N + 200);
        expect(g.complete).toBe(N + 200);
      } else {
        const urls = ndjsonUrls(log);
        expect(urls.length).toBe(N + 200);
        expect(urls.filter((u) => u === '/hit').length).toBe((N + 200) / 2);
      }
      await o.close();
    });
  }

  it('--log text to a stdout pipe nobody reads: no request stalls, RSS growth under 64 MiB, drops counted in /stats; the groups that were written are whole', { timeout: 240_000 }, async () => {
    const o = await smallOrigin();
    const px = await startProxy(o.url, ['--log', 'text', '--admin-listen', '127.0.0.1:0', '--admin-token', TOKEN], { pauseStdout: true });
    const rss0 = rssOf(px.p.pid as number);
    expect(await burst(px.url, N)).toBe(N);
    const grew = rssOf(px.p.pid as number) - rss0;
    const main = await stats(px);
    console.log(`s7 burst --log text to an unread pipe: RSS ${(rss0 / 2 ** 20).toFixed(1)} MiB + ${(grew / 2 ** 20).toFixed(1)} MiB over ${N} requests, log_dropped ${String(main['log_dropped'])}`);
    expect(main['client_req']).toBe(N);
    expect(grew).toBeLessThan(RSS_BOUND);
    expect(main['log_dropped']).toBeGreaterThan(0);
    // Now read what waited in the pipe, then stop.
    let out = '';
    px.p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    px.p.stdout?.resume();
    px.p.kill('SIGTERM');
    expect(await px.exited).toBe(0);
    const g = textGroups(out.replace(/^sluice: .*\n/gm, ''));
    expect(g.complete).toBe(g.groups);
    expect(g.groups + (main['log_dropped'] as number)).toBe(N);
    await o.close();
  });

  it('--log-file on a FIFO whose reader never reads: requests still answered, drops counted in /stats, and SIGTERM still exits 0', { timeout: 240_000 }, async () => {
    const o = await smallOrigin();
    const fifo = path.join(dir, 'stuck.fifo');
    execFileSync('mkfifo', [fifo]);
    // A reader that opens and never reads: the pipe fills (64 KiB) and every write after waits.
    const rfd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const px = await startProxy(o.url, ['--log', 'text', '--log-file', fifo, '--admin-listen', '127.0.0.1:0', '--admin-token', TOKEN, '--shutdown-timeout', '1s']);
      // ~62 KB of log per request (its header in the request and in the fetch): 64 MiB waits after ~1100.
      const headers = { 'x-pad': 'a'.repeat(30_000) };
      let sent = 0;
      while (sent < 4000 && ((await stats(px))['log_dropped'] ?? 0) === 0) {
        expect(await burst(px.url, 200, { headers })).toBe(200);
        sent += 200;
      }
      expect((await stats(px))['log_dropped']).toBeGreaterThan(0);
      px.p.kill('SIGTERM');
      expect(await px.exited).toBe(0);
      expect(px.out()).toMatch(/--log-file: .*groups? dropped/);
    } finally {
      closeSync(rfd);
    }
    await o.close();
  });
});

describe('s7: the access log (--log ncsa) on a FIFO whose reader never reads', () => {
  it('requests still answered, drops counted in /stats, SIGTERM exits 0', { timeout: 240_000 }, async () => {
    const o = await smallOrigin();
    const fifo = path.join(dir, 'stuck-ncsa.fifo');
    execFileSync('mkfifo', [fifo]);
    const rfd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const px = await startProxy(o.url, ['--log', 'ncsa', '--log-file', fifo, '--admin-listen', '127.0.0.1:0', '--admin-token', TOKEN]);
      // The combined format logs the User-Agent: ~30 KB a line, so 4 MiB wait after ~140 requests.
      const headers = { 'user-agent': 'u'.repeat(30_000) };
      let sent = 0;
      while (sent < 2000 && ((await stats(px))['log_dropped'] ?? 0) === 0) {
        expect(await burst(px.url, 100, { headers })).toBe(100);
        sent += 100;
      }
      expect((await stats(px))['log_dropped']).toBeGreaterThan(0);
      px.p.kill('SIGTERM');
      expect(await px.exited).toBe(0);
      expect(px.out()).toMatch(/--log: .*groups? dropped/);
      expect(px.out()).toMatch(/--log-file: the file took no writes/);
    } finally {
      closeSync(rfd);
    }
    await o.close();
  });
});

describe('s7: a stop while stdout is a pipe nobody reads', () => {
  it('SIGTERM after 3000 logged requests to an unread stdout pipe: the process still exits 0', { timeout: 240_000 }, async () => {
    const o = await smallOrigin();
    const px = await startProxy(o.url, ['--log', 'text'], { pauseStdout: true });
    expect(await burst(px.url, 3000)).toBe(3000);
    px.p.kill('SIGTERM');
    const code = await px.exited;
    expect(px.out()).not.toMatch(/Error|error/);
    expect(code).toBe(0);
    await o.close();
  });
});

/** A WebAssembly module exporting add(i32, i32) -> i32. */
const ADD_WASM = [0, 97, 115, 109, 1, 0, 0, 0, 1, 7, 1, 96, 2, 127, 127, 1, 127, 3, 2, 1, 0, 7, 7, 1, 3, 97, 100, 100, 0, 0, 10, 9, 1, 7, 0, 32, 0, 32, 1, 106, 11];

describe('s7: the V8 flags and the young-GC trigger sluice proxy sets at start', () => {
  it('a --config module compiling WebAssembly at import and in a hook works under --liftoff-only (the default)', async () => {
    const o = await smallOrigin();
    const cfg = path.join(dir, 'wasm.config.mjs');
    writeFileSync(
      cfg,
      `const bytes = new Uint8Array(${JSON.stringify(ADD_WASM)});
const atImport = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports;
let n = 0;
export default {
  backends: ['${o.url}'],
  hooks: {
    async responseFilter(resp) {
      // compiled again per response, after the proxy set --liftoff-only; hot enough to tier up if it could
      const { instance } = await WebAssembly.instantiate(bytes);
      for (let i = 0; i < 20000; i++) n = instance.exports.add(n, 1) & 0xffff;
      resp.headers['x-wasm'] = String(atImport.add(40, 2)) + '/' + String(instance.exports.add(2, 3));
    },
  },
};
`,
    );
    const p = spawn(process.execPath, [BIN, 'proxy', '--config', cfg, '--listen', '127.0.0.1:0', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
    let out = '';
    p.stdout.on('data', (d) => (out += String(d)));
    p.stderr.on('data', (d) => (out += String(d)));
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    await until(() => /listening on/.test(out) || p.exitCode !== null, 'the proxy to listen');
    const url = new URL(/listening on (http:\/\/[\d.]+:\d+)/.exec(out)?.[1] ?? 'http://127.0.0.1:1');
    for (let i = 0; i < 5; i++) {
      const r = await fetch(new URL('/hit', url));
      await r.arrayBuffer();
      expect(r.status).toBe(200);
      expect(r.headers.get('x-wasm')).toBe('42/5');
    }
    p.kill('SIGTERM');
    expect(await exited).toBe(0);
    await o.close();
  });

  for (const bad of ['abc', '-1', '4XB', '1.5.2MB', '']) {
    it(`--young-gc ${JSON.stringify(bad)}: one line naming the flag, exit 2, nothing listens`, async () => {
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn(process.execPath, [BIN, 'proxy', '--backend', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0', `--young-gc=${bad}`], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => (stdout += String(d)));
        p.stderr.on('data', (d) => (stderr += String(d)));
        const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
        p.on('exit', (code) => {
          clearTimeout(t);
          resolve({ code, stdout, stderr });
        });
      });
      expect(r.code).toBe(2);
      expect(r.stdout).not.toMatch(/listening/);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^sluice: .*--young-gc/);
    });
  }

  it('--young-gc 0 (documented: leaves collections to V8) is accepted and serves', async () => {
    const o = await smallOrigin();
    const px = await startProxy(o.url, ['--young-gc', '0']);
    expect(await burst(px.url, 20)).toBe(20);
    px.p.kill('SIGTERM');
    expect(await px.exited).toBe(0);
    await o.close();
  });
});

describe('s7: a pass much faster than 50 MB/s', () => {
  it('1 GiB passed to a client reading as fast as it can: every byte arrives, peak RSS growth under 48 MiB', { timeout: 240_000 }, async () => {
    const GIB = 1024 * 1024 * 1024;
    const piece = Buffer.alloc(256 * 1024, 'p');
    const o = await origin((req, res) => {
      if (req.url !== '/big-pass') return void res.end('small');
      res.writeHead(200, { 'content-length': GIB, 'cache-control': 'no-store' });
      let sent = 0;
      const pump = (): void => {
        while (sent < GIB) {
          sent += piece.length;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const px = await startProxy(o.url);
    expect(await burst(px.url, 20)).toBe(20);
    const pid = px.p.pid as number;
    const rss0 = rssOf(pid);
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
    // Counts the bytes and keeps only the head: a 1 GiB body is not kept in the test.
    const sock = net.connect(Number(px.url.port), px.url.hostname);
    let head = '';
    let bodyBytes = 0;
    sock.on('data', (d: Buffer) => {
      if (head.includes('\r\n\r\n')) return void (bodyBytes += d.length);
      head += d.toString('latin1');
      const i = head.indexOf('\r\n\r\n');
      if (i >= 0) {
        bodyBytes += head.length - i - 4;
        head = head.slice(0, i + 4);
      }
    });
    sock.on('error', () => undefined);
    sock.write(`GET /big-pass HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Basic eDp5\r\n\r\n`);
    await new Promise((r) => sock.on('close', r));
    const res = { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]), body: { length: bodyBytes } };
    clearInterval(sampler);
    peak = Math.max(peak, rssOf(pid));
    console.log(`s7 1 GiB pass unthrottled: RSS ${(rss0 / 2 ** 20).toFixed(1)} MiB, peak +${((peak - rss0) / 2 ** 20).toFixed(1)} MiB`);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(GIB);
    expect(peak - rss0).toBeLessThan(48 * 1024 * 1024);
    px.p.kill('SIGTERM');
    expect(await px.exited).toBe(0);
    await o.close();
  });
});
