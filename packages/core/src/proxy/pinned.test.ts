import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startScriptedOrigin } from '@sluice/fixtures';
import { KeepAliveClient, startProxy, useCleanup } from '../test-support/harness.js';

const track = useCleanup();

/**
 * An NTLM-style origin: authentication belongs to the TCP connection. Type-1 and type-3 messages must arrive on the
 * same connection, and a connection that completed the handshake stays authenticated for later requests.
 */
async function ntlmOrigin() {
  let handshake: Socket | undefined;
  const authenticated = new Set<Socket>();
  const origin = track(
    await startScriptedOrigin((req, res) => {
      const auth = String(req.headers.authorization ?? '');
      const reply = (status: number, body: string, challenge?: string): void => {
        res.writeHead(status, { 'content-length': String(body.length), ...(challenge === undefined ? {} : { 'www-authenticate': challenge }) });
        res.end(body);
      };
      if (authenticated.has(req.socket)) return reply(200, `hello again on the same connection: ${req.url}`);
      if (auth === 'NTLM TYPE1') {
        handshake = req.socket;
        return reply(401, 'challenge', 'NTLM TYPE2CHALLENGE');
      }
      if (auth === 'NTLM TYPE3') {
        if (req.socket !== handshake) return reply(401, 'type-3 on another connection', 'NTLM');
        authenticated.add(req.socket);
        return reply(200, 'welcome');
      }
      return reply(401, 'who are you', 'NTLM');
    }),
  );
  return { origin, authenticatedSockets: authenticated };
}

describe('pinned connections (NTLM, Negotiate)', () => {
  it('after an NTLM challenge, a client connection keeps using one origin connection, uncached', async () => {
    const { origin } = await ntlmOrigin();
    const px = track(await startProxy(origin.url));
    const c = track(new KeepAliveClient(px.port));
    expect((await c.send('GET', '/doc')).status).toBe(401);
    expect((await c.send('GET', '/doc', { authorization: 'NTLM TYPE1' })).status).toBe(401);
    const done = await c.send('GET', '/doc', { authorization: 'NTLM TYPE3' });
    expect(done.status).toBe(200);
    expect(done.body.toString()).toBe('welcome');
    // Later requests of this client connection ride the authenticated origin connection and are never cached.
    const later = await c.send('GET', '/other');
    expect(later.status).toBe(200);
    expect(later.body.toString()).toBe('hello again on the same connection: /other');
    expect(later.headers['cache-status']).toMatch(/detail=pinned/);
    expect((await c.send('GET', '/other')).headers['cache-status']).toMatch(/detail=pinned/);
    // Another client connection is not authenticated by it.
    const stranger = track(new KeepAliveClient(px.port));
    expect((await stranger.send('GET', '/other')).status).toBe(401);
  });

  it('when the pinned origin connection is gone the client gets an error, not a request on another connection', async () => {
    const { origin, authenticatedSockets } = await ntlmOrigin();
    const px = track(await startProxy(origin.url));
    const c = track(new KeepAliveClient(px.port));
    await c.send('GET', '/doc');
    await c.send('GET', '/doc', { authorization: 'NTLM TYPE1' });
    expect((await c.send('GET', '/doc', { authorization: 'NTLM TYPE3' })).status).toBe(200);
    const [sock] = [...authenticatedSockets];
    const closed = new Promise((r) => sock?.once('close', r));
    sock?.destroy();
    await closed;
    const requestsBefore = origin.count;
    const connectionsBefore = origin.connections;
    const after = await c.send('GET', '/after');
    expect(after.status).toBe(502);
    expect(origin.count).toBe(requestsBefore);
    expect(origin.connections).toBe(connectionsBefore);
  });
});
