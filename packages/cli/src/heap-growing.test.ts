import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startFixtureOrigin, type FixtureOrigin } from '@sluice/fixtures';
import { BIN, CLI_ENV } from './test-support/run-cli.js';

/**
 * `sluice proxy --heap-growing` (runtime-memory.ts heapGrowingPercent, issue 16 bulk miss): V8 counts the ArrayBuffer
 * bytes a stored miss keeps against the old generation's limit, so with V8's own growing factor a proxy ran a full
 * GC per ~25-30 MiB of stored body. Counted from the proxy's own `--trace-gc` lines: stored misses through the
 * default run fewer full (mark-compact) GCs than through `--heap-growing 0` (V8's factor), and the bodies are whole.
 * Objects of 192 KiB: bodies over 256 KiB are kept in reused slabs since session 9 (cache/slab-pool.ts), which V8 no
 * longer sees as new ArrayBuffers (0-1 full GCs either way per 320 MiB of 32 MiB objects); smaller bodies still are.
 */
const children: ChildProcess[] = [];
let origin: FixtureOrigin | undefined;
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
  await origin?.close();
  origin = undefined;
});

function startTraced(args: string[]): Promise<{ url: string; log: () => string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--trace-gc', BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
    children.push(p);
    let out = '';
    let done = false;
    const on = (d: Buffer): void => {
      out += String(d);
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m?.[1] !== undefined && !done) {
        done = true;
        resolve({ url: m[1], log: () => out });
      }
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (code) => reject(new Error(`exited ${String(code)}: ${out}`)));
  });
}

const SIZE = 192 * 1024;
async function coldWhole(url: string, tag: string): Promise<number> {
  const r = await request(`${url}/big/${SIZE}?tag=${tag}`);
  let n = 0;
  for await (const c of r.body) n += (c as Buffer).length;
  expect(r.statusCode).toBe(200);
  return n;
}
/** `n` cold misses, 8 at a time, each body whole. */
async function misses(url: string, tag: string, n: number): Promise<void> {
  for (let k = 0; k < n; k += 8) {
    const got = await Promise.all(Array.from({ length: Math.min(8, n - k) }, (_, j) => coldWhole(url, `${tag}-${k + j}`)));
    for (const g of got) expect(g).toBe(SIZE);
  }
}
const markCompacts = (log: string): number => (log.match(/Mark-Compact/g) ?? []).length;

describe('sluice proxy --heap-growing', () => {
  it('stored misses run fewer full GCs with the default than with V8 growing factor (0)', async () => {
    origin = await startFixtureOrigin();
    const common = ['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--quiet', '--storage', '96MB'];
    const dflt = await startTraced(common);
    const v8own = await startTraced([...common, '--heap-growing', '0']);
    const counts: number[] = [];
    for (const [i, p] of [dflt, v8own].entries()) {
      // Warm-up: the cache fills (96 MiB); from then on every miss evicts one, as a busy cache does.
      await misses(p.url, `warm-${i}`, 512);
      const before = markCompacts(p.log());
      // 320 MiB of stored body.
      await misses(p.url, `${i}`, 1707);
      counts.push(markCompacts(p.log()) - before);
    }
    const [withDefault, withV8] = counts as [number, number];
    expect(withV8).toBeGreaterThan(0);
    expect(withDefault).toBeLessThan(withV8);
  }, 120_000);
});
