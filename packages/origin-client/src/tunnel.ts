import net from 'node:net';
import { OriginError } from './errors.js';

/**
 * CONNECT tunnels: which destinations are allowed, and the TCP connection to one. Deny by default: a destination
 * must match an allowlist entry `host:port`, where host may be `*` or start with `*.` (any subdomain) and port may be
 * `*`. Hosts compare case-insensitively; IPv6 literals are written without brackets.
 */
export interface TunnelCounters {
  opened: number;
  denied: number;
  failed: number;
}

export function isTunnelAllowed(allow: readonly string[], host: string, port: number): boolean {
  const h = host.toLowerCase();
  return allow.some((entry) => {
    const i = entry.lastIndexOf(':');
    if (i <= 0) return false;
    const ph = entry.slice(0, i).toLowerCase();
    const pp = entry.slice(i + 1);
    const portOk = pp === '*' || Number(pp) === port;
    const hostOk = ph === '*' || ph === h || (ph.startsWith('*.') && h.endsWith(ph.slice(1)));
    return portOk && hostOk;
  });
}

/** Opens a TCP connection to an allowed destination; rejects with 403 (not allowed), 502 or 504. */
export function openTunnel(
  allow: readonly string[],
  host: string,
  port: number,
  opts: { signal: AbortSignal; connectTimeoutMs: number; counters: TunnelCounters },
): Promise<net.Socket> {
  if (!isTunnelAllowed(allow, host, port)) {
    opts.counters.denied++;
    return Promise.reject(new OriginError('ORIGIN_ERR_TUNNEL_DENIED', `CONNECT to ${host}:${port} is not in the allowlist`, { status: 403 }));
  }
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      opts.counters.failed++;
      reject(new OriginError('ORIGIN_ERR_TIMEOUT', `CONNECT to ${host}:${port} timed out`, { status: 504 }));
    }, opts.connectTimeoutMs);
    const onAbort = (): void => {
      socket.destroy();
    };
    opts.signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      opts.counters.opened++;
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      opts.counters.failed++;
      reject(new OriginError('ORIGIN_ERR_CONNECT', `CONNECT to ${host}:${port} failed: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { status: 502, cause: e }));
    });
  });
}
