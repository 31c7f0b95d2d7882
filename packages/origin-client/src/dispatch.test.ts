import type { Readable } from 'node:stream';
import type { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startScriptedOrigin, type ScriptedOrigin } from '@sluice/fixtures';
import { createOriginClient, type OriginClient, type OriginClientConfig } from './origin-client.js';

/**
 * Issue 16 (a miss's first byte): the origin request is dispatched in the caller's turn when a connection slot is
 * free, and the caller's headers object goes to undici as it is unless the client sets something on it.
 */
const open: Array<{ close(): Promise<void> }> = [];
let client: OriginClient | undefined;
afterEach(async () => {
  await client?.destroy();
  client = undefined;
  while (open.length > 0) await open.pop()?.close();
});

async function origin(): Promise<ScriptedOrigin> {
  const o = await startScriptedOrigin((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  open.push(o);
  return o;
}

async function text(body: Readable): Promise<string> {
  let s = '';
  for await (const c of body) s += String(c);
  return s;
}

function make(config: OriginClientConfig): OriginClient {
  client = createOriginClient(config);
  return client;
}

describe('origin request dispatch (issue 16)', () => {
  it('a free connection slot is taken at once: the request is in the pool before request() returns its promise', async () => {
    const o = await origin();
    const c = make({ backends: [{ url: o.url }] });
    const pool = c.backends[0]?.pool as Pool;
    const pending = c.request({ method: 'GET', path: '/a', headers: { host: 'h' }, body: null }, { signal: new AbortController().signal });
    // No promise hop between the call and undici's dispatch.
    expect(c.backends[0]?.active).toBe(1);
    expect(pool.stats.size).toBe(1);
    const r = await pending;
    expect(await text(r.body)).toBe('ok');
    expect(o.count).toBe(1);
  });

  it('with every slot taken the request still waits its turn in the queue and goes once a slot frees', async () => {
    const o = await origin();
    const c = make({ backends: [{ url: o.url, maxConnections: 1 }] });
    const pool = c.backends[0]?.pool as Pool;
    const signal = new AbortController().signal;
    const first = await c.request({ method: 'GET', path: '/1', headers: {}, body: null }, { signal });
    const second = c.request({ method: 'GET', path: '/2', headers: {}, body: null }, { signal });
    await new Promise((r) => setTimeout(r, 20));
    // Queued in front of the pool, not dispatched: the first body still holds the one slot.
    expect(pool.stats.size).toBe(0);
    expect(o.count).toBe(1);
    expect(await text(first.body)).toBe('ok');
    expect(await text((await second).body)).toBe('ok');
    expect(o.requests.map((r) => r.url)).toEqual(['/1', '/2']);
  });

  it("the caller's headers are sent as given and never modified; a host override and preemptive credentials go on a copy", async () => {
    const o = await origin();
    const plain = make({ backends: [{ url: o.url }] });
    const headers = { host: 'client.example', 'x-a': '1' };
    await text((await plain.request({ method: 'GET', path: '/p', headers, body: null }, { signal: new AbortController().signal })).body);
    expect(o.requests[0]?.headers['host']).toBe('client.example');
    expect(o.requests[0]?.headers['x-a']).toBe('1');
    await plain.destroy();
    const c = make({ backends: [{ url: o.url, hostHeader: 'www.example.com', auth: { type: 'basic', username: 'u', password: 'p' } }] });
    const mine = { host: 'client.example', 'x-a': '1' };
    await text((await c.request({ method: 'GET', path: '/q', headers: mine, body: null }, { signal: new AbortController().signal })).body);
    expect(o.requests[1]?.headers['host']).toBe('www.example.com');
    expect(o.requests[1]?.headers['authorization']).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(o.requests[1]?.headers['x-a']).toBe('1');
    expect(mine).toEqual({ host: 'client.example', 'x-a': '1' });
  });
});
