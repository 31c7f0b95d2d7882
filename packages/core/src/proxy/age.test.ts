import { describe, expect, it } from 'vitest';
import { fixtureBody, startScriptedOrigin } from '@sluice/fixtures';
import type { ProxyHooks } from '../policy/hooks.js';
import { parseRawResponse, rawExchange, startProxy, useCleanup } from '../test-support/harness.js';

/**
 * RFC 9111 §5.1: a cache sends Age on every response it serves from storage. Here for each kind of answer from cache
 * (full, 206, multipart 206, 304, 416), through the hit path's cached head block and through the vcl_deliver hook.
 */
const track = useCleanup();
const BODY = fixtureBody(100);
const T0 = Date.parse('2026-11-21T12:00:00Z');

/** An origin with one cacheable object dated T0, a proxy on a clock the test moves, the object stored at T0. */
async function stored(hooks?: ProxyHooks, originAge?: number) {
  let now = T0;
  const origin = track(
    await startScriptedOrigin((_req, res) => {
      const h: Record<string, string> = { 'cache-control': 'max-age=600', etag: '"a1"', date: new Date(T0).toUTCString(), 'content-length': '100' };
      if (originAge !== undefined) h['age'] = String(originAge);
      res.writeHead(200, h);
      res.end(BODY);
    }),
  );
  const px = track(await startProxy(origin.url, { now: () => now, defaultGraceSec: 0, ...(hooks === undefined ? {} : { hooks }) }));
  const get = (lines: string[] = []) =>
    rawExchange(px.port, `GET /o HTTP/1.1\r\nHost: t\r\n${lines.map((l) => `${l}\r\n`).join('')}Connection: close\r\n\r\n`).then(parseRawResponse);
  const first = await get();
  expect(first.status).toBe(200);
  return { origin, get, first, advance: (sec: number) => void (now += sec * 1000) };
}

const ANSWERS: Array<[string, string[], number]> = [
  ['a hit', [], 200],
  ['a 206', ['Range: bytes=0-9'], 206],
  ['a multipart 206', ['Range: bytes=0-1, 5-6'], 206],
  ['a 304', ['If-None-Match: "a1"'], 304],
  ['a 416', ['Range: bytes=500-'], 416],
];

describe('Age on answers from cache', () => {
  it.each(ANSWERS)('%s carries the Age of the stored object', async (_name, lines, status) => {
    const s = await stored();
    expect(s.first.headers['age']).toBe('0');
    s.advance(30);
    const r = await s.get(lines);
    expect(r.status).toBe(status);
    expect(r.headers['age']).toBe('30');
    expect(r.headers['cache-status']).toMatch(/^sluice; hit; ttl=570$/);
    expect(s.origin.count).toBe(1);
  });

  it.each(ANSWERS)('%s carries Age when a responseFilter (vcl_deliver) is set, and the hook sees it', async (_name, lines, status) => {
    const seen: Array<string | string[] | undefined> = [];
    const s = await stored({ responseFilter: (resp) => void seen.push(resp.headers['age']) });
    s.advance(45);
    const r = await s.get(lines);
    expect(r.status).toBe(status);
    expect(r.headers['age']).toBe('45');
    expect(seen).toEqual(['0', '45']);
  });

  it("Age counts the origin's Age too (the object arrived 20 s old), on a hit and a 206", async () => {
    const s = await stored(undefined, 20);
    expect(s.first.headers['age']).toBe('20');
    s.advance(10);
    expect((await s.get()).headers['age']).toBe('30');
    expect((await s.get(['Range: bytes=0-9'])).headers['age']).toBe('30');
  });
});
