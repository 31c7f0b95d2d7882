import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { BIN, CLI_ENV } from './test-support/run-cli.js';

/**
 * `sluice proxy` on SIGTERM (issue 10): it used to cut responses in flight after ~85 ms (ECONNRESET mid-stream).
 * Now it stops accepting, lets them finish up to --shutdown-timeout, and exits 0; a second signal exits at once.
 */
/**
 * A streaming origin in a process of its own: `parts` chunks `gapMs` apart (chunked, uncacheable). Its own process
 * keeps its timing independent of this test worker's event loop.
 */
const ORIGIN_JS = `
const http = require('node:http');
const [parts, gap] = process.argv.slice(1).map(Number);
const s = http.createServer(async (req, res) => {
  res.writeHead(200, { 'cache-control': 'no-store' });
  for (let i = 0; i < parts && !res.destroyed; i++) {
    res.write('part' + i + ';');
    await new Promise((r) => setTimeout(r, gap));
  }
  res.end();
});
s.listen(0, '127.0.0.1', () => console.log('origin ' + s.address().port));
`;

async function streamingOrigin(parts: number, gapMs: number): Promise<{ url: string; close(): Promise<void> }> {
  const p = spawn(process.execPath, ['-e', ORIGIN_JS, String(parts), String(gapMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    let out = '';
    p.stdout?.on('data', (d) => {
      out += String(d);
      const m = /origin (\d+)\n/.exec(out);
      if (m !== null) resolve(m[1] as string);
    });
    p.on('exit', (code) => reject(new Error(`origin exited ${String(code)}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      if (p.exitCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    },
  };
}

function startProxy(backend: string, extra: string[] = []): Promise<{ p: ChildProcess; url: URL; out: () => string; exited: Promise<number | null> }> {
  const p = spawn(process.execPath, [BIN, 'proxy', '--backend', backend, '--listen', '127.0.0.1:0', '--quiet', ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: CLI_ENV });
  let out = '';
  p.stdout?.on('data', (d) => (out += String(d)));
  p.stderr?.on('data', (d) => (out += String(d)));
  const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m !== null) {
        clearInterval(t);
        resolve({ p, url: new URL(m[1] as string), out: () => out, exited });
      }
    }, 10);
    void exited.then((code) => {
      clearInterval(t);
      reject(new Error(`proxy exited ${String(code)}: ${out}`));
    });
  });
}

/**
 * A GET over a raw socket; resolves once `part0` arrived, with a promise of everything until close (wrapped: an
 * async function returning a bare promise would wait for it).
 */
async function streamingGet(url: URL): Promise<{ all: Promise<string> }> {
  const sock = net.connect(Number(url.port), url.hostname);
  let got = '';
  const all = new Promise<string>((resolve) => {
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(got));
  });
  await new Promise<void>((resolve) => {
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('part0')) resolve();
    });
    sock.write(`GET /s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
  });
  return { all };
}

describe('sluice proxy shutdown', () => {
  it('SIGTERM lets a response in flight finish, then exits 0', async () => {
    const origin = await streamingOrigin(5, 80);
    const px = await startProxy(origin.url);
    const { all: body } = await streamingGet(px.url);
    px.p.kill('SIGTERM');
    const text = await body;
    expect(text).toContain('part4;');
    expect(text.endsWith('0\r\n\r\n')).toBe(true);
    expect(await px.exited).toBe(0);
    expect(px.out()).toMatch(/SIGTERM, finishing the responses in flight/);
    expect(px.out()).toMatch(/sluice: stopped\n/);
    await origin.close();
  });

  it('a response still running at --shutdown-timeout is cut, and the exit is still 0', async () => {
    const origin = await streamingOrigin(100, 50);
    const px = await startProxy(origin.url, ['--shutdown-timeout', '200ms']);
    const { all: body } = await streamingGet(px.url);
    px.p.kill('SIGTERM');
    const text = await body;
    expect(text.endsWith('0\r\n\r\n')).toBe(false);
    expect(await px.exited).toBe(0);
    expect(px.out()).toMatch(/stopped \(1 connection cut at the deadline\)/);
    await origin.close();
  });

  it('a second signal stops at once', async () => {
    const origin = await streamingOrigin(100, 50);
    const px = await startProxy(origin.url);
    const { all: body } = await streamingGet(px.url);
    px.p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    px.p.kill('SIGINT');
    expect(await px.exited).toBe(1);
    expect((await body).endsWith('0\r\n\r\n')).toBe(false);
    expect(px.out()).toMatch(/SIGINT again, stopping now/);
    await origin.close();
  });
});
