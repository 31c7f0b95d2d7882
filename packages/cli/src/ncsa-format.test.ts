import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { createProxy, formatNcsa, MemorySink, TxLog } from '@sluice/core';
import { createOriginClient } from '@sluice/origin-client';
import { startFixtureOrigin } from '@sluice/fixtures';
import { compileNcsaFormat, NCSA_DEFAULT_FORMAT } from './ncsa-format.js';
import { runCli, startCli } from './test-support/run-cli.js';

/** A proxy in front of the fixture origin whose log groups land in a MemorySink; all closed when the test ends. */
async function loggedProxy(onTestFinished: (fn: () => void | Promise<void>) => void): Promise<{ sink: MemorySink; port: number }> {
  const origin = await startFixtureOrigin();
  onTestFinished(() => origin.close());
  const sink = new MemorySink();
  const upstream = createOriginClient({ backends: [{ url: origin.url }] });
  const proxy = createProxy({ upstream, txlog: new TxLog([sink]) });
  const { port } = await proxy.listen(0);
  onTestFinished(async () => {
    await proxy.close();
    await upstream.destroy();
  });
  return { sink, port };
}

/** `--log-format`: varnishncsa -F formats for the access log. */
describe('--log-format (varnishncsa -F)', () => {
  it("the default format compiles to exactly the line --log ncsa writes (what sluice replay reads)", async ({ onTestFinished }) => {
    const { sink, port } = await loggedProxy(onTestFinished);
    const base = `http://127.0.0.1:${port}`;
    await (await request(`${base}/static/1k?q=1`, { headers: { referer: 'http://r.example/"x"', 'user-agent': 'ua\ttab' } })).body.text();
    await (await request(`${base}/static/1k?q=1`, { method: 'HEAD' })).body.text();
    await (await request(`${base}/missing`)).body.text();
    const line = compileNcsaFormat(NCSA_DEFAULT_FORMAT);
    expect(sink.groups).toHaveLength(3);
    for (const g of sink.groups) expect(line(g)).toBe(formatNcsa(g));
  });

  it('%{X}t: the time received as strftime X (UTC) and varnishncsa\'s %{sec} %{msec} %{usec} %{msec_frac} %{usec_frac}', async ({ onTestFinished }) => {
    const { sink, port } = await loggedProxy(onTestFinished);
    await (await request(`http://127.0.0.1:${port}/static/1k`)).body.text();
    const g = sink.groups[0];
    if (g === undefined) throw new Error('no log group');
    const start = Number(/^Start: (\d+\.\d+)/.exec(g.records.find((r) => r.tag === 'Timestamp')?.value ?? '')?.[1]);
    expect(start).toBeGreaterThan(1.7e9);
    const d = new Date(start * 1000);
    const iso = d.toISOString();
    const line = compileNcsaFormat('[%{%Y-%m-%dT%H:%M:%S}t] %{%F %T %z %Z %%}t %{%{sec}.%{msec_frac}}t %{%{usec_frac}}t %{msec}t %{%{usec}}t.%{usec_frac}t %{%s %j %a %A %b %B %e %d %y %I%p %u %w}t')(g);
    const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
    const fullDays = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    const fullMonths = d.toLocaleString('en-US', { month: 'long', timeZone: 'UTC' });
    const dayOfYear = Math.floor((d.getTime() - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000) + 1;
    const h12 = d.getUTCHours() % 12 === 0 ? 12 : d.getUTCHours() % 12;
    const sec = Math.floor(start);
    const micros = Math.floor(start * 1e6);
    const expected = [
      `[${iso.slice(0, 19)}]`,
      `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000 UTC %`,
      `${sec}.${iso.slice(20, 23)}`,
      String(micros % 1_000_000).padStart(6, '0'),
      String(Math.floor(start * 1e3)),
      `${micros}.${String(micros % 1_000_000).padStart(6, '0')}`,
      [sec, String(dayOfYear).padStart(3, '0'), days[d.getUTCDay()], fullDays[d.getUTCDay()], months[d.getUTCMonth()], fullMonths, String(d.getUTCDate()).padStart(2, ' '), String(d.getUTCDate()).padStart(2, '0'), iso.slice(2, 4), `${String(h12).padStart(2, '0')}${d.getUTCHours() < 12 ? 'AM' : 'PM'}`, d.getUTCDay() === 0 ? 7 : d.getUTCDay(), d.getUTCDay()].join(' '),
    ].join(' ');
    expect(line).toBe(`${expected}\n`);
  });

  it('writes every directive through the real binary: %h %m %U %q %s %b %H %I %O %D %T, headers, Varnish:handling/hitmiss/vxid, VSL:Tag', { timeout: 60_000 }, async ({ onTestFinished }) => {
    const origin = await startFixtureOrigin();
    onTestFinished(() => origin.close());
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'sluice-ncsa-')), 'access.log');
    const format = '%h %l %u %t "%r" %m %U|%q %s %b %H %I %O %D %T "%{X-Test}i" "%{Content-Type}o" %{Varnish:handling}x %{Varnish:hitmiss}x %{Varnish:vxid}x %{Varnish:side}x %{VSL:ReqURL}x %{Varnish:time_firstbyte}x\\t100%%';
    const { match } = await startCli(['proxy', '--listen', '127.0.0.1:0', '--backend', origin.url, '--log-format', format, '--log-file', file], /listening on (http:\/\/[\d.:]+)/, onTestFinished);
    const base = match[1] as string;
    const agent = new Agent();
    onTestFinished(() => agent.close());
    const get = async (p: string, headers: Record<string, string> = {}): Promise<void> => {
      await (await request(`${base}${p}`, { headers, dispatcher: agent })).body.text();
    };
    await get('/static/1k?a=1', { 'x-test': 'one' });
    await get('/static/1k?a=1');
    await get('/static/2k', { cookie: 'sid=1' });
    let lines: string[] = [];
    for (let i = 0; i < 500 && lines.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
    }
    expect(lines).toHaveLength(3);
    const re = (url: string, q: string, xTest: string, handling: string, hitmiss: string, size: number) =>
      new RegExp(
        `^127\\.0\\.0\\.1 - - \\[\\d{2}/\\w{3}/\\d{4}:\\d{2}:\\d{2}:\\d{2} \\+0000\\] "GET http://127\\.0\\.0\\.1:\\d+${url.replace(/[?.]/g, '\\$&')}${q.replace(/[?.]/g, '\\$&')} HTTP/1\\.1" GET ${url.replace(/[.]/g, '\\.')}\\|${q.replace(/[?]/g, '\\?')} 200 ${size} HTTP/1\\.1 \\d+ \\d+ \\d+ 0 "${xTest}" "application/octet-stream" ${handling} ${hitmiss} \\d+ c ${url.replace(/[.]/g, '\\.')}${q.replace(/[?]/g, '\\?')} \\d+\\.\\d{6}\\t100%$`,
      );
    expect(lines[0]).toMatch(re('/static/1k', '?a=1', 'one', 'miss', 'miss', 1024));
    expect(lines[1]).toMatch(re('/static/1k', '?a=1', '-', 'hit', 'hit', 1024));
    expect(lines[2]).toMatch(re('/static/2k', '', '-', 'pass', 'miss', 2048));
    // %D is microseconds, %I and %O the bytes received and sent: a hit sends its 1024 body bytes and headers.
    const fields = (lines[1] as string).split('"')[2]?.trim().split(' ') ?? [];
    expect(fields.slice(0, 5)).toEqual(['GET', '/static/1k|?a=1', '200', '1024', 'HTTP/1.1']);
    expect(Number(fields[6])).toBeGreaterThan(1024);
  });

  it.each([
    ['%Z', /^sluice: configuration invalid: --log-format: %Z is not a varnishncsa format directive/],
    ['%{Foo:bar}x', /^sluice: configuration invalid: --log-format: %\{Foo:bar\}x is not known/],
    ['%h %', /^sluice: configuration invalid: --log-format: cannot read "%"/],
    ['%{%Y %Q}t', /^sluice: configuration invalid: --log-format: %\{%Y %Q\}t: %Q is not a supported strftime conversion/],
    ['%{%{nsec}}t', /^sluice: configuration invalid: --log-format: %\{%\{nsec\}\}t: %\{nsec\} is not a time extension/],
    ['%{%Y%}t', /^sluice: configuration invalid: --log-format: %\{%Y%\}t ends with a lone %/],
  ])('a bad format %j: sluice check says which directive, exit 1 (sluice proxy: exit 2)', async (format, why) => {
    const r = await runCli(['check', '--backend', 'http://127.0.0.1:1', '--log-format', format]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(why);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('--log-format implies --log ncsa and fits no other log', { timeout: 60_000 }, async () => {
    const ok = await runCli(['check', '--backend', 'http://127.0.0.1:1', '--log-format', '%h %s']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/log +ncsa '%h %s'/);
    const bad = await runCli(['check', '--backend', 'http://127.0.0.1:1', '--log', 'text', '--log-format', '%h']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('sluice: configuration invalid: --log-format is for the access log (--log ncsa), not --log text');
    const proxy = await runCli(['proxy', '--backend', 'http://127.0.0.1:1', '--listen', '127.0.0.1:0', '--log-format', '%Z']);
    expect(proxy.code).toBe(2);
    expect(proxy.stderr.trim()).toBe('sluice: --log-format: %Z is not a varnishncsa format directive');
  });
});
