import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startScriptedOrigin } from '@sluice/fixtures';
import { rawExchange, startProxy, until, useCleanup } from '../test-support/harness.js';
import { MemorySink, TxLog, type Transaction } from './txlog.js';

const track = useCleanup();

/** Every record value of a group (request and its fetches). */
function allValues(t: Transaction): string[] {
  return [...t.records.map((r) => `${r.tag} ${r.value}`), ...t.children.flatMap(allValues)];
}

/** A proxy logging to memory; /c is cached despite its Set-Cookie (the hook skips the builtin), so it also hits. */
async function setup(logSecrets: boolean | undefined) {
  const sink = new MemorySink();
  const origin = track(
    await startScriptedOrigin((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'set-cookie': 'sid=s3cr3t-session; Path=/; HttpOnly' });
      res.end('ok');
    }),
  );
  const txlog = logSecrets === undefined ? new TxLog([sink]) : new TxLog([sink], { logSecrets });
  const px = track(await startProxy(origin.url, { txlog, hooks: { upstreamResponseFilter: () => 'deliver' } }));
  const get = async (p: string, headers: Record<string, string> = {}) => {
    const r = await request(`${px.url}${p}`, { headers: { host: 't', ...headers } });
    await r.body.text();
  };
  // A pass (Authorization) carrying every kind of credential, then a miss and a hit of an object with Set-Cookie.
  await get('/p', { authorization: 'Basic dXNlcjpodW50ZXIy', 'proxy-authorization': 'Bearer t0ken-xyz', cookie: 'a=c00kie-one; b=c00kie-two' });
  await get('/c');
  await get('/c');
  // A refused request carries a cookie too: its HttpGarbage record shows what arrived.
  await rawExchange(px.port, 'GET / HTTP/1.1\r\nHost: t\r\nCookie: g=garbage-secret\r\nBad Header\r\n\r\n');
  await until(() => sink.groups.length === 4);
  return sink.groups.flatMap(allValues).join('\n');
}

const SECRETS = ['dXNlcjpodW50ZXIy', 't0ken-xyz', 'c00kie-one', 'c00kie-two', 's3cr3t-session', 'garbage-secret'];

describe('credentials in the transaction log', () => {
  it('are masked by default: the scheme, cookie names and Set-Cookie attributes stay', async () => {
    const log = await setup(undefined);
    for (const s of SECRETS) expect(log, s).not.toContain(s);
    expect(log).toContain('ReqHeader authorization: Basic ***');
    expect(log).toContain('ReqHeader proxy-authorization: Bearer ***');
    expect(log).toContain('ReqHeader cookie: a=***; b=***');
    expect(log).toContain('BereqHeader authorization: Basic ***');
    expect(log).toContain('BerespHeader set-cookie: sid=***; Path=/; HttpOnly');
    // The hit path logs its serialised header block: masked too.
    expect(log.match(/RespHeader set-cookie: sid=\*\*\*; Path=\/; HttpOnly/g)).toHaveLength(3);
    expect(log).toContain('Cookie: g=***');
  });

  it('are logged as they are with logSecrets', async () => {
    const log = await setup(true);
    for (const s of SECRETS) expect(log, s).toContain(s);
  });
});
