import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ProxyHooks } from '../policy/hooks.js';
import { rawExchange, startProxy, useCleanup, useUncaughtRecorder } from '../test-support/harness.js';

/**
 * Session 11, defect 2: a header value a policy sets with a character above U+00FF (`a☃b`) went out as each
 * character's low byte (`61 03 62`). Varnish sends VCL strings as their UTF-8 bytes; so does Sluice now, for response
 * headers (responseFilter, upstreamResponseFilter), synth responses and origin request headers (upstreamRequestFilter).
 * Values up to U+00FF keep one byte per character (what came from the wire as latin1 goes back unchanged); CR, LF or
 * NUL in a value is still refused.
 */
const track = useCleanup();
const uncaught = useUncaughtRecorder();
const SNOWMAN = Buffer.from('61e2988362', 'hex'); // 'a☃b' in UTF-8

/** A raw origin that records each request head's bytes and answers a small cacheable 200. */
async function startRecordingOrigin(): Promise<{ url: string; heads: Buffer[]; close(): Promise<void> }> {
  const heads: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      heads.push(buf.subarray(0, i + 4));
      buf = buf.subarray(i + 4);
      s.write('HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    heads,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** The bytes of header `name`'s value in a raw head (up to its CRLF). */
function valueBytes(raw: Buffer, name: string): Buffer | undefined {
  const at = raw.indexOf(`\r\n${name}: `);
  if (at < 0) return undefined;
  const from = at + name.length + 4;
  return raw.subarray(from, raw.indexOf('\r\n', from));
}

const get = (port: number, path: string): Promise<Buffer> => rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);

describe('policy-set header values above U+00FF go out as UTF-8 (defect 2)', () => {
  it('responseFilter on a miss and on a hit: UTF-8 bytes; Latin-1 values keep one byte per character', async () => {
    const o = track(await startRecordingOrigin());
    const hooks: ProxyHooks = {
      responseFilter(resp) {
        resp.headers['x-snow'] = 'a☃b';
        resp.headers['x-latin'] = 'caf\u00e9';
        resp.headers['x-emoji'] = '\u{1f600}';
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    for (const kind of ['miss', 'hit']) {
      const raw = await get(px.port, '/r');
      expect(raw.subarray(0, 15).toString('latin1'), kind).toBe('HTTP/1.1 200 OK');
      expect(valueBytes(raw, 'x-snow'), kind).toEqual(SNOWMAN);
      expect(valueBytes(raw, 'x-latin'), kind).toEqual(Buffer.from('636166e9', 'hex'));
      expect(valueBytes(raw, 'x-emoji'), kind).toEqual(Buffer.from('\u{1f600}', 'utf8'));
      expect(raw.subarray(raw.indexOf('\r\n\r\n') + 4).toString('latin1'), kind).toBe('ok');
    }
    expect(uncaught).toEqual([]);
  });

  it('upstreamResponseFilter (stored with the object): UTF-8 on the miss and on the hit', async () => {
    const o = track(await startRecordingOrigin());
    const hooks: ProxyHooks = {
      upstreamResponseFilter(beresp) {
        beresp.headers['x-snow'] = 'a☃b';
        return undefined;
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    for (const kind of ['miss', 'hit']) {
      const raw = await get(px.port, '/u');
      expect(valueBytes(raw, 'x-snow'), kind).toEqual(SNOWMAN);
    }
    expect(o.heads.length).toBe(1);
  });

  it('a synth response: UTF-8 in its headers; Content-Length counts the body bytes', async () => {
    const o = track(await startRecordingOrigin());
    const hooks: ProxyHooks = {
      requestFilter: () => ({ synth: { status: 200, body: 'snow ☃', headers: { 'x-snow': 'a☃b' } } }),
    };
    const px = track(await startProxy(o.url, { hooks }));
    const raw = await get(px.port, '/s');
    expect(valueBytes(raw, 'x-snow')).toEqual(SNOWMAN);
    const body = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    expect(body).toEqual(Buffer.from('snow ☃', 'utf8'));
    expect(Number(valueBytes(raw, 'content-length')?.toString('latin1'))).toBe(body.length);
    expect(o.heads.length).toBe(0);
  });

  it('upstreamRequestFilter: the origin receives the UTF-8 bytes', async () => {
    const o = track(await startRecordingOrigin());
    const hooks: ProxyHooks = {
      upstreamRequestFilter(bereq) {
        bereq.headers['x-snow'] = 'a☃b';
        bereq.headers['x-latin'] = 'caf\u00e9';
      },
    };
    const px = track(await startProxy(o.url, { hooks }));
    const raw = await get(px.port, '/q');
    expect(raw.subarray(0, 15).toString('latin1')).toBe('HTTP/1.1 200 OK');
    expect(valueBytes(o.heads[0] as Buffer, 'x-snow')).toEqual(SNOWMAN);
    expect(valueBytes(o.heads[0] as Buffer, 'x-latin')).toEqual(Buffer.from('636166e9', 'hex'));
  });

  it.each([
    ['CR LF', 'a\r\nx-injected: 1'],
    ['LF', 'a\nx-injected: 1'],
    ['NUL', 'a\0b'],
    ['CR LF after a snowman', '☃\r\nx-injected: 1'],
  ])('a value with %s is still refused: a synth header -> 502 without it; responseFilter on every answer -> the connection is cut', async (_name, value) => {
    const o = track(await startRecordingOrigin());
    const lines: string[] = [];
    const synthPx = track(await startProxy(o.url, { hooks: { requestFilter: () => ({ synth: { status: 200, headers: { 'x-bad': value } } }) }, onLog: (l) => lines.push(l.message) }));
    const synth = await get(synthPx.port, '/s');
    expect(synth.subarray(0, 12).toString('latin1')).toBe('HTTP/1.1 502');
    expect(synth.toString('latin1')).not.toMatch(/\r\nx-(injected|bad)/i);
    const hooks: ProxyHooks = {
      responseFilter(resp) {
        resp.headers['x-bad'] = value;
      },
    };
    const px = track(await startProxy(o.url, { hooks, onLog: (l) => lines.push(l.message) }));
    // The hook sets it on the 502 too: nothing can be written, the connection is cut (as before session 11).
    expect((await get(px.port, '/bad')).length).toBe(0);
    expect(lines.filter((m) => m.includes('CORE_ERR_INVALID_HEADER')).length).toBeGreaterThanOrEqual(2);
    expect(uncaught).toEqual([]);
  });

  it('upstreamRequestFilter setting CR LF: the origin gets nothing of it (the fetch fails: 503)', async () => {
    const o = track(await startRecordingOrigin());
    const px = track(await startProxy(o.url, { hooks: { upstreamRequestFilter: (b) => void (b.headers['x-bad'] = '☃\r\nx-injected: 1') } }));
    const raw = await get(px.port, '/q');
    expect(raw.subarray(0, 12).toString('latin1')).toBe('HTTP/1.1 503');
    expect(o.heads.length).toBe(0);
    expect(uncaught).toEqual([]);
  });
});
