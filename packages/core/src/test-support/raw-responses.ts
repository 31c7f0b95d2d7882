import net from 'node:net';
import { expect } from 'vitest';

/**
 * Responses with Content-Length, back to back in `all`, for requests of `methods` (HEAD and 304: no body). Asserts
 * that nothing is left over.
 */
export function splitResponses(all: Buffer, methods: readonly string[]): Array<{ head: string; body: Buffer }> {
  const out: Array<{ head: string; body: Buffer }> = [];
  let at = 0;
  for (const m of methods) {
    const sep = all.indexOf('\r\n\r\n', at);
    if (sep < 0) break;
    const head = all.subarray(at, sep).toString('latin1');
    const status = Number(head.slice(9, 12));
    const len = m === 'HEAD' || status === 304 ? 0 : Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 'NaN');
    if (all.length < sep + 4 + len) break;
    out.push({ head, body: all.subarray(sep + 4, sep + 4 + len) });
    at = sep + 4 + len;
  }
  expect(at).toBe(all.length);
  return out;
}

/**
 * A raw client that sends `bytes` and does not read until `read()` is called; `read()` resolves with all it got at
 * close. `track` closes it after the test (useCleanup's).
 */
export async function lateReader(
  port: number,
  bytes: string,
  track: (x: { close(): Promise<void> }) => unknown,
): Promise<{ sock: net.Socket; read(): Promise<Buffer> }> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  sock.pause();
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(bytes);
  track({ close: async () => void sock.destroy() });
  return {
    sock,
    read: () =>
      new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        sock.on('data', (d: Buffer) => chunks.push(d));
        sock.once('close', () => resolve(Buffer.concat(chunks)));
        sock.resume();
      }),
  };
}
