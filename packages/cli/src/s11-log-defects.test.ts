import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { compose } from './compose.js';
import { toConfig } from './config.js';
import { BIN, CLI_ENV } from './test-support/run-cli.js';

/**
 * Session 11, defects 4 and 5 of the transaction log, through the CLI's composition (in process):
 * - 5: the --log-file descriptor stayed open after the composed proxy stopped (only process exit closed it). Now the
 *   FileSink owns it and closes it once the last group is written. A relapse shows as the file still in /proc/self/fd.
 * - 4: with stdout (a stream sink) holding too much, a `-g session` block was dropped without
 *   being counted in log_dropped (and the requests held for it were lost). Now whole blocks are dropped as they go out,
 *   counted as the file sink counts them: a session block as its requests plus the session.
 */
const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-s11-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The fds of this process open on `file`. */
function fdsOn(file: string): string[] {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  });
}

/** One request on a connection of its own (Connection: close); resolves with the whole answer. */
function getOnce(port: number, p: string, extra = ''): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(parts)));
    s.write(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`);
  });
}

describe('--log-file is closed when the composed proxy stops (defect 5)', () => {
  for (const format of ['text', 'ndjson'] as const) {
    it(`${format}: after close the fd is gone and the file holds every request's whole group`, async ({ onTestFinished }) => {
      const origin = await startScriptedOrigin((_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '2' });
        res.end('ok');
      });
      onTestFinished(() => origin.close());
      const file = path.join(dir, `close.${format}`);
      const px = compose(toConfig({ backend: [origin.url], quiet: true, log: format, 'log-file': file }));
      const { port } = await px.proxy.listen(0, '127.0.0.1');
      expect(fdsOn(file).length).toBe(1);
      for (let i = 0; i < 20; i++) expect((await getOnce(port, `/o${i % 5}`)).toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
      await px.close();
      expect(fdsOn(file)).toEqual([]);
      const text = readFileSync(file, 'utf8');
      expect(text.split('ReqAcct').length - 1).toBe(20);
      expect(text.split(format === 'text' ? '<< Request  >>' : '"type":"Request"').length - 1).toBe(20);
    });
  }
});

describe('-g session to a stdout that holds too much: dropped blocks are counted (defect 4)', () => {
  it('a stdout pipe nobody reads: sessions and requests printed plus log_dropped equal all that was logged', { timeout: 120_000 }, async ({ onTestFinished }) => {
    const origin = await startScriptedOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '2' });
      res.end('ok');
    });
    onTestFinished(() => origin.close());
    const token = 's11-token';
    const p = spawn(process.execPath, [BIN, 'proxy', '--backend', origin.url, '--listen', '127.0.0.1:0', '--quiet', '--log', 'text', '--log-grouping', 'session', '--admin-listen', '127.0.0.1:0', '--admin-token', token], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: CLI_ENV,
    });
    onTestFinished(() => void p.kill('SIGKILL'));
    let err = '';
    p.stderr?.on('data', (d: Buffer) => (err += String(d)));
    let out = '';
    const onOut = (d: Buffer): void => void (out += d.toString('latin1'));
    p.stdout?.on('data', onOut);
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    while (!/admin API on/.test(out + err) || !/listening on/.test(out + err)) await new Promise((r) => setTimeout(r, 10));
    const port = Number(/listening on http:\/\/[\d.]+:(\d+)/.exec(out + err)?.[1]);
    const admin = /admin API on (http:\/\/[\d.]+:\d+)/.exec(out + err)?.[1] as string;
    // Nobody reads stdout from here on: the pipe (64 KiB) fills, then the proxy's queue for it (4 MiB).
    p.stdout?.off('data', onOut);
    p.stdout?.pause();
    const startLen = out.length;
    // ~24 KB of log per request (the pad in the request and in its fetch; the origin takes 16 KiB heads).
    const pad = [0, 1, 2].map((i) => `x-pad-${i}: ${'a'.repeat(4000)}\r\n`).join('');
    const N = 400;
    for (let i = 0; i < N; i++) expect((await getOnce(port, `/s${i}`, pad)).toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    const stats = async (): Promise<Record<string, number>> => {
      const r = await fetch(`${admin}/stats`, { headers: { authorization: `Bearer ${token}` } });
      return ((await r.json()) as { main: Record<string, number> }).main;
    };
    // Every connection closed; its Session block goes out (or is dropped) as it closes.
    await new Promise((r) => setTimeout(r, 300));
    const dropped = (await stats())['log_dropped'] ?? 0;
    expect(dropped).toBeGreaterThan(0);
    // Read what waited in the pipe, then stop.
    let rest = '';
    p.stdout?.on('data', (d: Buffer) => (rest += d.toString('latin1')));
    p.stdout?.resume();
    p.kill('SIGTERM');
    expect(await exited).toBe(0);
    const read = out.slice(startLen) + rest;
    const sessions = read.split('<< Session  >>').length - 1;
    const requests = read.split('<< Request  >>').length - 1;
    expect(sessions).toBeGreaterThan(0);
    // The admin API's own connection: a session with its /stats request, not logged (admin requests are not proxied).
    expect(sessions + requests + dropped).toBe(2 * N);
  });
});
