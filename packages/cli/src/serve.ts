import { randomBytes } from 'node:crypto';
import { createAdminServer, type AdminServer } from '@sluice/core';
import type { Config } from './config.js';
import { compose, formatLogLine, type Composed } from './compose.js';
import { CliError } from './errors.js';

/** Builds and starts the proxy; the caller decides how long it runs. */
export async function serve(
  config: Config,
  write: (line: string) => void,
): Promise<Composed & { url: string; adminUrl: string | undefined; adminToken: string | undefined }> {
  const c = compose(config, config.quiet ? undefined : (l) => write(formatLogLine(l)));
  let admin: AdminServer | undefined;
  try {
    const addr = await c.proxy.listen(config.listenPort, config.listenHost);
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    let adminUrl: string | undefined;
    let adminToken: string | undefined;
    if (config.adminListen !== undefined) {
      // Admin is off unless asked for; without a configured token one is generated and printed once.
      adminToken = config.adminToken ?? randomBytes(18).toString('base64url');
      admin = createAdminServer(c.proxy, { token: adminToken, live: c.live });
      const a = await admin.listen(config.adminListen.port, config.adminListen.host);
      adminUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    }
    const running = admin;
    return {
      ...c,
      url: `http://${host}:${addr.port}`,
      adminUrl,
      adminToken: config.adminToken === undefined ? adminToken : undefined,
      close: async () => {
        await running?.close();
        await c.close();
      },
    };
  } catch (e: unknown) {
    await admin?.close();
    await c.close();
    const code = (e as { code?: unknown }).code;
    throw new CliError('CLI_ERR_LISTEN', `cannot listen on ${config.listenHost}:${config.listenPort}: ${String(code ?? e)}`, { cause: e });
  }
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
