import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errorMessage } from '../errors.js';
import type { ProxyEnv } from '../context.js';
import type { Upstream } from '../upstream.js';

/**
 * CONNECT host:port: a TCP tunnel through the upstream's tunnel(), which decides what is allowed. Bytes are relayed
 * both ways and counted; either side closing closes the other, and so does `tunnelIdleTimeoutMs` with no byte either
 * way.
 */
export async function connectTunnel(
  tunnel: NonNullable<Upstream['tunnel']>,
  env: Pick<ProxyEnv<unknown>, 'stats' | 'log' | 'tunnelIdleTimeoutMs'>,
  target: string,
  client: Socket,
  head: Buffer,
): Promise<void> {
  const { stats, log } = env;
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(target);
  const answer = (status: number, reason: string): void => {
    client.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    // Nothing reads the client's Readable yet (http1/connection.ts leaves it unflowing for the tunnel): read and drop
    // what the client still sends, so its hang-up is seen and the socket goes.
    client.resume();
  };
  if (m === null || Number(m[2]) > 65535) {
    stats.client_req_400++;
    return answer(400, 'Bad Request');
  }
  const host = (m[1] as string).replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  const ac = new AbortController();
  client.once('close', () => ac.abort());
  let upstream: Duplex;
  try {
    upstream = await tunnel(host, port, { signal: ac.signal });
  } catch (e: unknown) {
    const status = typeof (e as { status?: unknown }).status === 'number' ? (e as { status: number }).status : 502;
    if (status === 403) stats.tunnel_denied++;
    log({ level: status === 403 ? 'warn' : 'error', event: 'connect', message: `CONNECT ${target}: ${errorMessage(e)}` });
    return answer(status, http.STATUS_CODES[status] ?? 'Error');
  }
  stats.tunnel_opened++;
  client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) {
    stats.tunnel_bytes_up += head.length;
    upstream.write(head);
  }
  client.on('data', (d: Buffer) => (stats.tunnel_bytes_up += d.length));
  upstream.on('data', (d: Buffer) => (stats.tunnel_bytes_down += d.length));
  // The client socket's idle timer sees both directions: it restarts on every byte the client sends (read) and every
  // byte the origin sends (written to the client). Silence both ways for that long closes both sides.
  client.setTimeout(env.tunnelIdleTimeoutMs, () => {
    stats.tunnel_idle_closed++;
    log({ level: 'info', event: 'connect', message: `CONNECT ${target}: closed after ${env.tunnelIdleTimeoutMs} ms idle` });
    client.destroy();
    upstream.destroy();
  });
  void pipeline(client, upstream).catch(() => undefined);
  void pipeline(upstream, client).catch(() => undefined);
}
