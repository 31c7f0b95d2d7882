import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createProxy, StreamSink, TxLog } from '@sluice/core';
import { createOriginClient } from '@sluice/origin-client';
import { startFixtureOrigin, type FixtureOrigin } from '@sluice/fixtures';
import { parseNcsa } from './replay/trace.js';
import { runCli } from './test-support/run-cli.js';

/** `--log ncsa`: an access log in varnishncsa's default format, one line per request, that `sluice replay` reads. */
const Q = '"((?:[^"\\\\]|\\\\.)*)"';
const LINE = new RegExp(`^(\\S+) - (\\S+) \\[(\\d{2}/[A-Z][a-z]{2}/\\d{4}:\\d{2}:\\d{2}:\\d{2} \\+0000)\\] ${Q} (\\d{3}) (\\d+|-) ${Q} ${Q}$`);

async function proxyWithNcsa(origin: FixtureOrigin, logSecrets = false) {
  let out = '';
  const sink = new StreamSink({ write: (s: string) => (out += s) }, 'ncsa');
  const upstream = createOriginClient({ backends: [{ url: origin.url }] });
  const proxy = createProxy({ upstream, txlog: new TxLog([sink], { logSecrets }) });
  const { port } = await proxy.listen(0);
  return {
    url: `http://127.0.0.1:${port}`,
    lines: () => {
      sink.flush();
      return out.split('\n').filter((l) => l !== '');
    },
    close: async () => {
      await proxy.close();
      await upstream.destroy();
    },
  };
}

describe('--log ncsa', () => {
  it('one combined-format line per request, as varnishncsa writes it, read back by sluice replay', async () => {
    const origin = await startFixtureOrigin();
    const px = await proxyWithNcsa(origin);
    try {
      await (await request(`${px.url}/static/1k?q=1`, { headers: { 'user-agent': 'test "agent"', referer: 'http://ref.example/' } })).body.text();
      await (await request(`${px.url}/static/1k?q=1`, { method: 'HEAD' })).body.text();
      await (await request(`${px.url}/private`, { headers: { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` } })).body.text();
      const lines = px.lines();
      expect(lines).toHaveLength(3);
      const [get, head, auth] = lines.map((l) => LINE.exec(l));
      expect(get?.[1]).toBe('127.0.0.1');
      expect(get?.[4]).toBe(`GET ${px.url}/static/1k?q=1 HTTP/1.1`);
      expect(get?.[5]).toBe('200');
      expect(get?.[6]).toBe('1024');
      expect(get?.[7]).toBe('http://ref.example/');
      expect(get?.[8]).toBe('test \\"agent\\"');
      expect(head?.[4]).toBe(`HEAD ${px.url}/static/1k?q=1 HTTP/1.1`);
      expect(head?.[6]).toBe('-');
      // Credentials are masked in the log by default, so no user can be named.
      expect(auth?.[2]).toBe('-');
      const trace = parseNcsa(`${lines.join('\n')}\n`);
      expect(trace.skipped).toEqual([]);
      expect(trace.requests.map((r) => [r.method, r.url, r.recorded.status])).toEqual([
        ['GET', '/static/1k?q=1', 200],
        ['HEAD', '/static/1k?q=1', 200],
        ['GET', '/private', 200],
      ]);
      expect(trace.requests[0]?.headers).toEqual([
        ['Host', new URL(px.url).host],
        ['Referer', 'http://ref.example/'],
        ['User-Agent', 'test "agent"'],
      ]);
    } finally {
      await px.close();
      await origin.close();
    }
  });

  it('names the Basic-auth user when credentials are logged (--log-secrets)', async () => {
    const origin = await startFixtureOrigin();
    const px = await proxyWithNcsa(origin, true);
    try {
      await (await request(`${px.url}/private`, { headers: { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` } })).body.text();
      expect(LINE.exec(px.lines()[0] ?? '')?.[2]).toBe('alice');
    } finally {
      await px.close();
      await origin.close();
    }
  });

  it('is a --log choice of the CLI', async () => {
    const r = await runCli(['check', '--backend', 'http://127.0.0.1:8080', '--log', 'ncsa']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^log\s+ncsa, -g request$/m);
  });
});
