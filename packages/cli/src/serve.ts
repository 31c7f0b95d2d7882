import type { Config } from './config.js';
import { compose, formatLogLine, type Composed } from './compose.js';
import { CliError } from './errors.js';

/** Builds and starts the proxy; the caller decides how long it runs. */
export async function serve(config: Config, write: (line: string) => void): Promise<Composed & { url: string }> {
  const c = compose(config, config.quiet ? undefined : (l) => write(formatLogLine(l)));
  try {
    const addr = await c.proxy.listen(config.listenPort, config.listenHost);
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return { ...c, url: `http://${host}:${addr.port}` };
  } catch (e: unknown) {
    await c.origin.destroy();
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
