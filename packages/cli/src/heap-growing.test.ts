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

const SIZE = 32 * 1024 * 1024;
async function coldWhole(url: string, tag: string): Promise<number> {
  const r = await request(`${url}/big/${SIZE}?tag=${tag}`);
  let n = 0;
  for await (const c of r.body) n += (c as Buffer).length;
  expect(r.statusCode).toBe(200);
  return n;
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
      // Warm-up: the cache fills (three objects); from then on every miss evicts one, as a busy cache does.
      for (let k = 0; k < 3; k++) expect(await coldWhole(p.url, `warm-${i}-${k}`)).toBe(SIZE);
      const before = markCompacts(p.log());
      // 320 MiB of stored body.
      for (let k = 0; k < 10; k++) expect(await coldWhole(p.url, `${i}-${k}`)).toBe(SIZE);
      counts.push(markCompacts(p.log()) - before);
    }
    const [withDefault, withV8] = counts as [number, number];
    expect(withV8).toBeGreaterThan(0);
    expect(withDefault).toBeLessThan(withV8);
  }, 120_000);
});
