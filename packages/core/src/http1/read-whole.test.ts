import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Server, type BadRequestInfo } from './server.js';

/**
 * A read that is one whole request head is parsed from the shared read buffer's text without a Buffer view
 * (Connection.parseWhole); everything else goes through parse(). Both read modes must answer alike, byte for byte:
 * heads one per read, a refused head (what the log keeps of it included), CONNECT, blank lines before a head, two
 * heads in one read, a head split across reads, a head with a body.
 */

let server: Http1Server | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function run(sharedReadBuffer: boolean, writes: string[]): Promise<{ out: string; bad: Array<{ status: number; received: string }> }> {
  const bad: Array<{ status: number; received: string }> = [];
  server = new Http1Server(
    (req, res) => {
      void (async () => {
        let body = '';
        if (req.body !== null) for await (const c of req.body) body += String(c);
        const text = `${req.method} ${req.url} ${JSON.stringify(req.headers)} [${body}] ${req.headBytes}`;
        res.writeHead(200, { 'content-length': String(text.length) });
        res.end(Buffer.from(text));
      })();
    },
    {
      sharedReadBuffer,
      onBadRequest: (status: number, _r: string, info: BadRequestInfo) => bad.push({ status, received: info.received.toString('latin1') }),
      onConnect: (_req, socket) => socket.end('HTTP/1.1 200 Connection Established\r\n\r\ntunnel'),
    },
  );
  const port = (await server.listen(0, '127.0.0.1')).port;
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('error', () => undefined);
  for (const w of writes) {
    s.write(w);
    // One read per write: wait for the answer (or a moment) before the next.
    await sleep(40);
  }
  s.end();
  await Promise.race([closed, sleep(3000)]);
  s.destroy();
  await server.close();
  server = undefined;
  return { out, bad };
}

const cases: Array<[string, string[]]> = [
  ['heads one per read', ['GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: u\r\n\r\n', 'GET /b?q=1 HTTP/1.1\r\nhost: y\r\nAccept: */*\r\n\r\n', 'HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n']],
  ['a refused head in one read', ['GET /a HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /b HTTP/1.1\r\nBad Field: 1\r\nHost: x\r\n\r\n']],
  ['a second Host', ['GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n']],
  ['CONNECT in one read', ['CONNECT example:443 HTTP/1.1\r\nHost: example:443\r\n\r\n']],
  ['blank lines before a head', ['GET /a HTTP/1.1\r\nHost: x\r\n\r\n', '\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n']],
  ['two heads in one read', ['GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n']],
  ['a head split across reads', ['GET /a HTTP/1.1\r\nHo', 'st: x\r\n\r\n']],
  ['a head with its body in one read, then a head alone', ['POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc', 'GET /z HTTP/1.1\r\nHost: x\r\n\r\n']],
  ['a head ending in bare LFs', ['GET /a HTTP/1.1\nHost: x\n\n']],
  ['Connection: close', ['GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'GET /never HTTP/1.1\r\nHost: x\r\n\r\n']],
];

describe('a read that is one whole request head', () => {
  it.each(cases)('%s: both read modes answer alike', async (_n, writes) => {
    const shared = await run(true, writes);
    const plain = await run(false, writes);
    expect(shared.out).toBe(plain.out);
    expect(shared.bad).toEqual(plain.bad);
    expect(shared.out.length + shared.bad.length).toBeGreaterThan(0);
  });

  it('answers heads sent one per read, with what was sent', async () => {
    const a = 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n';
    const b = 'GET /b HTTP/1.1\r\nHost: y\r\nAccept: t\r\n\r\n';
    const { out } = await run(true, [a, b]);
    expect(out).toContain(`GET /a {"host":"x"} [] ${a.length}\x48TTP`);
    expect(out).toMatch(new RegExp(`GET /b \\{"host":"y","accept":"t"\\} \\[\\] ${b.length}$`));
  });

  it('keeps what a refused head sent for the log', async () => {
    const { bad } = await run(true, ['GET /b HTTP/1.1\r\nBad Field: 1\r\n\r\n']);
    expect(bad).toEqual([{ status: 400, received: 'GET /b HTTP/1.1\r\nBad Field: 1\r\n\r\n' }]);
  });
});
