import { randomBytes } from 'node:crypto';
import { createAdminServer, type AdminServer } from '@sluice/core';
import type { Config } from './config.js';
import { compose, formatLogLine, type Composed } from './compose.js';
import { CliError } from './errors.js';

const REASONS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'no such address on this machine',
  ENOTFOUND: 'unknown host',
};

/** The one-line error for a listener that could not start: which flag, which address, and why. */
export function listenError(flag: string, host: string, port: number, e: unknown): CliError {
  const code = (e as { code?: unknown }).code;
  const why = typeof code === 'string' ? `${code}${REASONS[code] === undefined ? '' : ` (${REASONS[code]})`}` : e instanceof Error ? e.message : String(e);
  return new CliError('CLI_ERR_LISTEN', `${flag}: cannot listen on ${host}:${port}: ${why}`, { cause: e });
}

const urlOf = (a: { family: string; address: string; port: number }): string => `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;

/** Builds and starts the proxy (and the admin API when asked for); the caller decides how long it runs. */
export async function serve(
  config: Config,
  write: (line: string) => void,
  opts: { reload?: (() => Promise<string>) | undefined; onTransitBytes?: ((bytes: number) => void) | undefined } = {},
): Promise<Composed & { url: string; adminUrl: string | undefined; adminToken: string | undefined }> {
  const c = compose(config, config.quiet ? undefined : (l) => write(formatLogLine(l)), opts.onTransitBytes);
  let url: string;
  try {
    url = urlOf(await c.proxy.listen(config.listenPort, config.listenHost));
  } catch (e: unknown) {
    await c.close();
    throw listenError('--listen', config.listenHost, config.listenPort, e);
  }
  let admin: AdminServer | undefined;
  let adminUrl: string | undefined;
  let adminToken: string | undefined;
  if (config.adminListen !== undefined) {
    // Admin is off unless asked for; without a configured token one is generated and printed once.
    adminToken = config.adminToken ?? randomBytes(18).toString('base64url');
    admin = createAdminServer(c.proxy, {
      token: adminToken,
      live: c.live,
      reload: opts.reload,
      backends: { list: () => c.origin.listBackends(), setHealth: (name, health) => c.origin.setHealth(name, health) },
    });
    try {
      adminUrl = urlOf(await admin.listen(config.adminListen.port, config.adminListen.host));
    } catch (e: unknown) {
      await c.close();
      throw listenError('--admin-listen', config.adminListen.host, config.adminListen.port, e);
    }
  }
  const running = admin;
  return {
    ...c,
    url,
    adminUrl,
    adminToken: config.adminToken === undefined ? adminToken : undefined,
    close: async () => {
      await running?.close();
      await c.close();
    },
    shutdown: async (timeoutMs) => {
      await running?.close();
      return c.shutdown(timeoutMs);
    },
  };
}

/**
 * The first and the second SIGINT/SIGTERM, with listeners installed once and kept: between the two there is never a
 * moment without one. (Two `untilSignal()` in a row left such a moment: Node restores the default action when the
 * last listener goes, so a second signal arriving while the first was being handled killed the process by signal,
 * its log unwritten; seen under load in s7-attack.test.ts.)
 */
export function signalSequence(): { first: Promise<string>; second: Promise<string> } {
  let n = 0;
  let first: (sig: string) => void = () => undefined;
  let second: (sig: string) => void = () => undefined;
  const p1 = new Promise<string>((r) => (first = r));
  const p2 = new Promise<string>((r) => (second = r));
  const on = (sig: string): void => {
    n++;
    if (n === 1) first(sig);
    else if (n === 2) second(sig);
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return { first: p1, second: p2 };
}

/** Resolves on SIGINT or SIGTERM. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
