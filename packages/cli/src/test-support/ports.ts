import net, { type AddressInfo } from 'node:net';

/** A loopback port that was free a moment ago (a listener on port 0, closed again). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Holds a loopback port busy until `close()`. */
export async function busyPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (srv.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => srv.close(() => resolve())),
  };
}
